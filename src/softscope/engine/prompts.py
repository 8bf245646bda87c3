"""SoftPrompt: the tensor plus the metadata needed to read it again, safetensors IO and PEFT interop."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .errors import SoftscopeError
from .runs import save_tensors, write_json

TENSOR_KEY = "prompt"
PEFT_KEY = "prompt_embeddings"


@dataclass
class SoftPrompt:
    """n virtual tokens of width d, with where they came from and how well they did."""

    tensor: torch.Tensor  # [n, d], float32 on CPU when saved
    model: str = ""
    task: str = ""
    template: str = ""
    label_words: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    step: int = 0
    accuracy: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return int(self.tensor.shape[0])

    @property
    def width(self) -> int:
        return int(self.tensor.shape[1])

    def meta(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "tensor"}
        d.update(n_tokens=self.n_tokens, width=self.width)
        return d

    def check_width(self, width: int, model_name: str = "") -> None:
        """Refuse to load a prompt into a model of another width (a clear error instead of a shape crash)."""
        if self.width != width:
            raise SoftscopeError(
                f"this prompt has width {self.width} (trained on {self.model or 'an unknown model'}) but "
                f"{model_name or 'the model'} has width {width}: pass --model {self.model or '<the training model>'}"
            )

    # --- safetensors file: tensor + JSON metadata next to it in the header and in a .json sidecar -------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        meta = self.meta()
        save_tensors(path, {TENSOR_KEY: self.tensor.float()}, {"softscope": json.dumps(meta, default=str)})
        write_json(path.with_suffix(".json"), meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SoftPrompt":
        """Load a softscope prompt file, a PEFT prompt-tuning adapter folder, or a run dir (its final prompt)."""
        path = Path(path)
        if path.is_dir():
            if (path / "adapter_model.safetensors").exists():
                return import_peft(path)
            if (path / "prompt.safetensors").exists():
                return cls.load(path / "prompt.safetensors")
            raise SoftscopeError(f"{path} holds no prompt.safetensors nor a PEFT adapter_model.safetensors")
        if not path.exists():
            raise SoftscopeError(f"prompt file {path} does not exist")
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                header = f.metadata() or {}
            tensors = load_file(str(path))
        except Exception as e:
            raise SoftscopeError(f"{path} is not a safetensors prompt file ({e})") from None
        if TENSOR_KEY not in tensors:
            if PEFT_KEY in tensors:
                return cls(tensor=tensors[PEFT_KEY])
            raise SoftscopeError(f"{path} has no '{TENSOR_KEY}' tensor (keys: {', '.join(tensors)})")
        meta = json.loads(header.get("softscope", "{}"))
        kw = {k: meta[k] for k in ("model", "task", "template", "label_words", "classes", "step", "accuracy", "extra")
              if k in meta}
        return cls(tensor=tensors[TENSOR_KEY], **kw)


def export_peft(prompt: SoftPrompt, out_dir: str | Path, base_model: str | None = None) -> Path:
    """Write a PEFT prompt-tuning adapter (adapter_config.json + adapter_model.safetensors) that peft loads."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from peft import PromptTuningConfig, TaskType

    cfg = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=prompt.n_tokens,
                             token_dim=prompt.width, num_transformer_submodules=1,
                             base_model_name_or_path=base_model or prompt.model or None)
    cfg_dict = cfg.to_dict()
    write_json(out / "adapter_config.json", {k: (v.value if hasattr(v, "value") else v) for k, v in cfg_dict.items()})
    save_tensors(out / "adapter_model.safetensors", {PEFT_KEY: prompt.tensor.float()},
                 {"format": "pt", "softscope": json.dumps(prompt.meta(), default=str)})
    return out


def import_peft(adapter_dir: str | Path) -> SoftPrompt:
    """Read a PEFT prompt-tuning adapter folder as a SoftPrompt."""
    d = Path(adapter_dir)
    cfg_path, w_path = d / "adapter_config.json", d / "adapter_model.safetensors"
    if not w_path.exists():
        if (d / "adapter_model.bin").exists():
            w = torch.load(d / "adapter_model.bin", map_location="cpu", weights_only=True)
        else:
            raise SoftscopeError(f"{d} has no adapter_model.safetensors: not a PEFT adapter folder")
    else:
        w = load_file(str(w_path))
    if PEFT_KEY not in w:
        raise SoftscopeError(f"{d} is a PEFT adapter but not prompt tuning (no '{PEFT_KEY}' key; keys: {', '.join(list(w)[:5])})")
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    ptype = cfg.get("peft_type", "PROMPT_TUNING")
    if ptype not in ("PROMPT_TUNING",):
        raise SoftscopeError(f"{d} is a {ptype} adapter; softscope reads PROMPT_TUNING adapters")
    t = w[PEFT_KEY]
    n = cfg.get("num_virtual_tokens")
    if n and t.shape[0] != n:  # several transformer submodules stack their prompts
        t = t[:n]
    return SoftPrompt(tensor=t.float(), model=cfg.get("base_model_name_or_path") or "",
                      extra={"imported_from": str(d), "peft_config": cfg})
