"""SoftPrompt: the tensor plus the metadata needed to read it again, safetensors IO and PEFT interop."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..records import PromptMeta
from .carry import model_path
from .errors import SoftscopeError
from .runs import save_tensors, write_json

TENSOR_KEY = "prompt"
# The prompt's initialisation (so `project` can say how far training moved it) lives in a file of its own,
# `init/<digest>.safetensors` in a subfolder beside the prompt, named in the header as `init_file`: a prompt file
# then holds exactly one [n, d] tensor, so "take the file's first tensor" can never pick the untrained start, and
# a glob of `checkpoints/*.safetensors` finds only prompts. Files written before this kept it under INIT_KEY in the
# prompt file itself; they still load.
INIT_KEY = "init"
INIT_DIR = "init"
_INIT_NAME = re.compile(r"init/[0-9a-f]{16}\.safetensors")
PEFT_KEY = "prompt_embeddings"


def checked_tensor(t, where: str) -> torch.Tensor:
    """A prompt tensor as read from a file, refused unless it is [tokens >= 1, width >= 1] of finite floats."""
    if not torch.is_tensor(t) or t.dim() != 2 or min(t.shape) < 1:
        shape = list(t.shape) if torch.is_tensor(t) else type(t).__name__
        raise SoftscopeError(f"{where} holds a prompt of shape {shape}: a prompt is [tokens >= 1, width]; "
                             "re-export or retrain it")
    if not t.is_floating_point():
        raise SoftscopeError(f"{where} holds a {t.dtype} prompt: a prompt holds floats; re-export or retrain it")
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise SoftscopeError(f"{where} holds {bad} non-finite value(s) (NaN or inf) of {t.numel()}: use an earlier "
                             "checkpoint or retrain")
    return t


def _json_object(text: str, where: str) -> dict:
    """A JSON object from a file or header, or a one-line error naming where it came from."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise SoftscopeError(f"{where} is not valid JSON ({e.msg} at line {e.lineno}): re-export the prompt") from None
    if not isinstance(obj, dict):
        raise SoftscopeError(f"{where} is not a JSON object (it is a {type(obj).__name__}): re-export the prompt")
    return obj


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
    settings: dict[str, Any] = field(default_factory=dict)  # what scoring it again needs (engine.carry)
    init: torch.Tensor | None = None  # [n, d] initial prompt, when known

    @property
    def placement(self) -> str:
        """after_bos (softscope's training) or before_bos (PEFT's): where the virtual tokens sit."""
        return self.settings.get("placement") or "after_bos"

    @property
    def n_tokens(self) -> int:
        return int(self.tensor.shape[0])

    @property
    def width(self) -> int:
        return int(self.tensor.shape[1])

    def meta(self) -> dict[str, Any]:
        """Everything but the tensors: what the file header and the .json sidecar hold."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("tensor", "init")}
        d.update(n_tokens=self.n_tokens, width=self.width)
        return d

    def check_width(self, width: int, model_name: str = "") -> None:
        """Refuse to load a prompt into a model of another width (a clear error instead of a shape crash)."""
        if self.width != width:
            raise SoftscopeError(
                f"this prompt has width {self.width} (trained on {self.model or 'an unknown model'}) but "
                f"{model_name or 'the model'} has width {width}: pass --model {self.model or '<the training model>'}"
            )

    def check_task(self, task, allow_other_task: bool = False) -> None:
        """Refuse to score this prompt on a task whose classes or label words differ from the ones it was trained
        with (the numbers would mean nothing), unless the caller asks for it explicitly."""
        if allow_other_task:
            return
        for what, mine, theirs, fix in (
                ("classes", self.classes, task.classes, f"--task {self.task}" if self.task else "the prompt's --task"),
                ("label words", self.label_words, task.label_words, f"--label-words {','.join(self.label_words)}")):
            if mine and list(mine) != list(theirs):
                raise SoftscopeError(f"the prompt was trained with {what} {', '.join(mine)} but {task.name} has "
                                     f"{', '.join(theirs)}: pass {fix}, or --allow-other-task to score it anyway")

    # --- safetensors file: tensor + JSON metadata next to it in the header and in a .json sidecar -------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        meta = self.meta()
        tensors = {TENSOR_KEY: self.tensor.float()}
        if self.init is not None and self.init.shape == self.tensor.shape:
            meta["init_file"] = f"{INIT_DIR}/{save_init(self.init, path.parent).name}"
        meta = PromptMeta.of(meta)  # the header and the sidecar hold the declared record
        save_tensors(path, tensors, {"softscope": json.dumps(meta, default=str)})
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
            pickle_only(path)
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
                return cls(tensor=checked_tensor(tensors[PEFT_KEY], str(path)))
            raise SoftscopeError(f"{path} has no '{TENSOR_KEY}' tensor (keys: {', '.join(tensors)})")
        m = PromptMeta.from_dict(_json_object(header.get("softscope", "{}"), f"the softscope header of {path}"))
        init = tensors.get(INIT_KEY)  # files written before init files had their own
        if init is None and isinstance(m.init_file, str):
            init = load_init(path.parent, m.init_file)
        return cls(tensor=checked_tensor(tensors[TENSOR_KEY], str(path)),
                   init=checked_tensor(init, str(path)) if init is not None else None, model=m.model, task=m.task,
                   template=m.template, label_words=m.label_words, classes=m.classes, step=m.step,
                   accuracy=m.accuracy, extra=m.extra, settings=m.settings)


def save_init(init: torch.Tensor, folder: Path) -> Path:
    """Write an initial prompt once per folder into its init/ subfolder, named by its content (checkpoints of one
    run share one file); returns the path."""
    import hashlib

    t = init.detach().float().cpu().contiguous()
    digest = hashlib.sha256(t.numpy().tobytes() + str(tuple(t.shape)).encode()).hexdigest()[:16]
    path = Path(folder) / INIT_DIR / f"{digest}.safetensors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, {INIT_KEY: t})
    return path


def load_init(folder: Path, name: str) -> torch.Tensor | None:
    """The initial prompt a header names, or None when its file is gone (the prompt itself still loads)."""
    if not _INIT_NAME.fullmatch(name):
        return None  # only init/<digest>.safetensors beside the prompt is followed, never another path
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        t = load_file(str(path)).get(INIT_KEY)
    except Exception:
        return None
    return checked_tensor(t, str(path)) if t is not None else None


def _base_model(prompt: SoftPrompt, base_model: str | None) -> str | None:
    return base_model or prompt.settings.get("model_path") or (model_path(prompt.model) if prompt.model else None)


def export_peft(prompt: SoftPrompt, out_dir: str | Path, base_model: str | None = None) -> Path:
    """Write a PEFT prompt-tuning adapter (adapter_config.json + adapter_model.safetensors) that peft loads.

    base_model_name_or_path is the real model (folder or hub id), so AutoPeftModelForCausalLM.from_pretrained
    finds it; softscope's own metadata (alias, settings) rides in the safetensors header. `export_notes` says
    what a user should know about the result.
    """
    base = _base_model(prompt, base_model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from peft import PromptTuningConfig, TaskType

    cfg = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=prompt.n_tokens,
                             token_dim=prompt.width, num_transformer_submodules=1, base_model_name_or_path=base)
    cfg_dict = cfg.to_dict()
    write_json(out / "adapter_config.json", {k: (v.value if hasattr(v, "value") else v) for k, v in cfg_dict.items()})
    save_tensors(out / "adapter_model.safetensors", {PEFT_KEY: prompt.tensor.float()},
                 {"format": "pt", "softscope": json.dumps(prompt.meta(), default=str)})
    return out


def export_notes(prompt: SoftPrompt, base_model: str | None = None) -> list[str]:
    """Warnings for a PEFT export: a base model PEFT cannot find, a placement PEFT does not reproduce."""
    base = _base_model(prompt, base_model)
    notes = []
    if base and not Path(base).exists() and "/" not in base:
        notes.append(f"base model {base!r} is neither a folder nor a hub id: pass --base-model with the model's "
                     "folder or hub id so PEFT can load it")
    if prompt.placement == "after_bos":
        notes.append("PEFT puts virtual tokens before the tokenizer's BOS, softscope trained this prompt after it: on "
                     "a model whose tokenizer adds BOS, PEFT's scores differ from softscope's (train with --placement "
                     "before_bos for an exact match); softscope reads this adapter back with its own placement")
    return notes


def pickle_only(d: Path) -> None:
    """Refuse, with the reason and the fix, a PEFT folder whose weights are only a pickle (adapter_model.bin)."""
    if (d / "adapter_model.bin").exists() and not (d / "adapter_model.safetensors").exists():
        raise SoftscopeError(f"{d} holds only adapter_model.bin, a pickle, which softscope does not load (unpickling "
                             "can run code): re-save the adapter with save_pretrained(..., safe_serialization=True)")


def import_peft(adapter_dir: str | Path) -> SoftPrompt:
    """Read a PEFT prompt-tuning adapter folder as a SoftPrompt.

    An adapter softscope exported keeps its recorded settings; one trained with PEFT gets PEFT's placement
    (virtual tokens before BOS), so softscope scores it as PEFT does.
    """
    d = Path(adapter_dir)
    cfg_path, w_path = d / "adapter_config.json", d / "adapter_model.safetensors"
    if not w_path.exists():
        pickle_only(d)
        raise SoftscopeError(f"{d} has no adapter_model.safetensors: not a PEFT adapter folder")
    header: dict = {}
    w_file = w_path
    try:
        from safetensors import safe_open

        w = load_file(str(w_path))
        with safe_open(str(w_path), "pt") as f:
            header = f.metadata() or {}
    except Exception as e:  # truncated or not a tensor file at all: the libraries raise many types
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise SoftscopeError(f"{w_file} is not a readable adapter ({msg}): re-export it") from None
    if not isinstance(w, dict) or PEFT_KEY not in w:
        keys = ", ".join(list(w)[:5]) if isinstance(w, dict) else type(w).__name__
        raise SoftscopeError(f"{d} is a PEFT adapter but not prompt tuning (no '{PEFT_KEY}' key; keys: {keys})")
    try:
        cfg = _json_object(cfg_path.read_text(encoding="utf-8"), str(cfg_path)) if cfg_path.exists() else {}
    except UnicodeDecodeError:
        raise SoftscopeError(f"{cfg_path} is not UTF-8 JSON: re-export the adapter") from None
    ptype = cfg.get("peft_type", "PROMPT_TUNING")
    if ptype not in ("PROMPT_TUNING",):
        raise SoftscopeError(f"{d} is a {ptype} adapter; softscope reads PROMPT_TUNING adapters")
    t = checked_tensor(w[PEFT_KEY], str(w_file))
    n = cfg.get("num_virtual_tokens")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= t.shape[0]):
        raise SoftscopeError(f"{cfg_path}: num_virtual_tokens {n!r} does not fit the {t.shape[0]}-row prompt tensor: "
                             "re-export the adapter")
    if n and t.shape[0] != n:  # several transformer submodules stack their prompts
        t = t[:n]
    base = str(cfg.get("base_model_name_or_path") or "")
    extra = {"imported_from": str(d), "peft_config": cfg}
    if "softscope" in header:  # exported by softscope: its own metadata, settings and placement
        meta = _json_object(header["softscope"], f"the softscope header of {w_path}")
        kw = {k: meta[k] for k in ("model", "task", "template", "label_words", "classes", "step", "accuracy",
                                   "settings") if k in meta}
        kw.setdefault("model", base)
        return SoftPrompt(tensor=t.float(), extra={**meta.get("extra", {}), **extra}, **kw)
    return SoftPrompt(tensor=t.float(), model=base, extra=extra,
                      settings={"placement": "before_bos", "model": base, "model_path": base})
