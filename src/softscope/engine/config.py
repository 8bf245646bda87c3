"""Typed configs shared by the Python API and the CLI (the CLI builds one; the API takes one)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .errors import SoftscopeError
from .models import DEFAULT_MODEL


def h(default: Any, help: str, **kw) -> Any:
    """A dataclass field with a default and a one-line help text (shown by the CLI)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelOptions:
    """Which model, on which device, in which precision."""

    model: str = h(DEFAULT_MODEL, "packaged alias (smollm2-135m, gemma3-270m), local folder or Hugging Face id")
    device: str = h("auto", "cpu, cuda, cuda:N or auto")
    dtype: str = h("auto", "float32, bfloat16, float16 or auto (float32 on CPU, bfloat16 on CUDA)")
    trust_remote_code: bool = h(False, "allow model code from the Hub (off unless you ask)")


@dataclass
class TaskOptions:
    """Which task and how to read it."""

    task: str = h("sst2", "built-in task (sst2, sst5, subj, agnews, trec), a CSV/TSV/JSONL file or folder, or hub:NAME")
    data_dir: str | None = h(None, "folder with <task>/train.jsonl etc. (default: $SOFTSCOPE_DATA, then ../shared/data)")
    text_column: str | None = h(None, "text column of a user file (default: text)")
    label_column: str | None = h(None, "label column of a user file (default: label)")
    label_words: list[str] | None = h(None, "verbalizer words, one per class in class order")
    max_train: int | None = h(None, "use at most this many training examples (seeded)")
    max_test: int | None = h(None, "use at most this many test examples (seeded)")


@dataclass
class TrainConfig(ModelOptions, TaskOptions):
    """Prompt tuning: n virtual tokens before the text of a frozen LM, trained on the label-token loss."""

    tokens: int = h(7, "number of virtual tokens")
    steps: int = h(300, "optimizer steps")
    batch_size: int = h(8, "examples per step")
    lr: float = h(1e-2, "AdamW learning rate (small models like 1e-2..3e-2)")
    weight_decay: float = h(0.0, "AdamW weight decay")
    schedule: str = h("linear", "linear (decay to 0, no warm-up) or constant")
    grad_clip: float = h(1.0, "clip the prompt gradient norm (0 = off)")
    init: str = h("vocab", "vocab (embeddings of random vocabulary tokens), random (Gaussian at embedding scale) or text")
    init_text: str = h("Classify the sentiment of this sentence as positive or negative.", "text for --init text")
    checkpoint_every: int = h(25, "save a checkpoint (with its eval accuracy) every this many steps; step 0 always")
    eval_examples: int = h(300, "seeded test subset for checkpoint accuracy (0 = whole test set)")
    final_eval: str = h("full", "final prompt on: full (whole test set), subset, or none")
    max_length: int = h(80, "truncate formatted inputs to this many tokens")
    verbalizer: str = h("auto", "first (label word's first token), full (all its tokens) or auto")
    bucket: bool = h(True, "form batches from examples of similar length (less padding, same objective)")
    bf16_autocast: str = h("off", "bfloat16 autocast for forward/backward: off (float32, the same numbers on every "
                                  "CPU), on, or auto (on only where the device has native bf16: CUDA, AVX512-BF16/AMX)")
    eval_batch_size: int = h(32, "batch size for evaluation")
    seed: int = h(0, "seed for init, data order and eval subset")

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise SoftscopeError("--tokens must be at least 1")
        if self.steps < 0 or self.batch_size < 1:
            raise SoftscopeError("--steps must be >= 0 and --batch-size >= 1")
        if self.checkpoint_every < 1:
            raise SoftscopeError("--checkpoint-every must be >= 1")
        if self.init not in ("vocab", "random", "text"):
            raise SoftscopeError(f"--init {self.init!r}: use vocab, random or text")
        if self.schedule not in ("linear", "constant"):
            raise SoftscopeError(f"--schedule {self.schedule!r}: use linear or constant")
        if self.final_eval not in ("full", "subset", "none"):
            raise SoftscopeError(f"--final-eval {self.final_eval!r}: use full, subset or none")
        if isinstance(self.bf16_autocast, bool):  # API callers may pass True/False
            self.bf16_autocast = "on" if self.bf16_autocast else "off"
        if self.bf16_autocast not in ("off", "on", "auto"):
            raise SoftscopeError(f"--bf16-autocast {self.bf16_autocast!r}: use off, on or auto")
        if self.lr <= 0:
            raise SoftscopeError("--lr must be positive")


def subconfig(cls, cfg: Any, **override):
    """Build dataclass `cls` from the same-named fields of another config (e.g. TrainConfig from a sweep's)."""
    names = {f.name for f in fields(cls)}
    kw = {k: v for k, v in vars(cfg).items() if k in names}
    kw.update(override)
    return cls(**kw)
