"""Typed configs shared by the Python API and the CLI (the CLI builds one; the API takes one)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import SoftscopeError
from .models import DEFAULT_MODEL


def option(default: Any, help: str, **kw) -> Any:
    """A dataclass field with a default and a one-line help text (shown by the CLI).

    Numeric fields may carry bounds (`ge`, `gt`, `le`, `lt`, and `why` for the message) and text fields a tuple of
    `choices`; `validate` checks both for API and CLI alike.
    """
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


SEED = {"ge": 0, "lt": 2**63}  # bounds of every seed: torch and random accept it, and it fits an int64
# bounds of every learning rate: above 10 an Adam(W) step moves a prompt by > 10 per coordinate per step, and lr
# near float32's maximum overflows inside the optimizer; nothing in the papers goes above 0.3
LR = {"gt": 0, "le": 10.0, "why": "a learning rate above 10 makes the optimizer diverge or overflow"}
BOUNDS = ("ge", "gt", "le", "lt", "why")


def flag(name: str) -> str:
    """The CLI option of a config field (`max_length` -> `--max-length`)."""
    return "--" + name.replace("_", "-")


def _show(x: float) -> str:
    if isinstance(x, int):
        return f"2**{x.bit_length() - 1}" if x > 2**53 and x & (x - 1) == 0 else str(x)
    return f"{x:g}"


def check_number(option: str, value: Any, *, ge: float | None = None, gt: float | None = None,
                 le: float | None = None, lt: float | None = None, why: str = "") -> None:
    """Refuse a non-finite or out-of-range number with one line naming the option and what it accepts."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SoftscopeError(f"{option} {value!r}: give a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise SoftscopeError(f"{option} {value}: give a finite number")
    ok = ((ge is None or value >= ge) and (gt is None or value > gt) and (le is None or value <= le)
          and (lt is None or value < lt))
    if not ok:
        need = " and ".join(f"{op} {_show(b)}" for op, b in ((">=", ge), (">", gt), ("<=", le), ("<", lt))
                            if b is not None)
        raise SoftscopeError(f"{option} {_show(value)}: use a value {need}" + (f" ({why})" if why else ""))


def check_choice(option: str, value: Any, choices: tuple[str, ...], why: str = "") -> None:
    """Refuse a value outside a fixed set with one line naming the option and every value it accepts."""
    if value not in choices:
        listed = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]
        raise SoftscopeError(f"{option} {value!r}: use {listed}" + (f" ({why})" if why else ""))


def check_presets(cls: type, presets: dict[str, dict[str, Any]]) -> None:
    """A method's --protocol presets name only fields of its config (checked at import, so a renamed field cannot
    leave a preset silently setting nothing)."""
    names = {f.name for f in fields(cls)}
    for name, values in presets.items():
        bad = sorted(set(values) - names)
        if bad:
            raise TypeError(f"{cls.__name__} preset {name!r} names no field {', '.join(bad)}")


def validate(cfg: Any) -> None:
    """Check every number of a config dataclass before anything runs: finite, and within its field's bounds.

    Bounds come from the field metadata (`option(..., ge=1)`); lists of numbers are checked element by element.
    A field with `choices` must hold one of them.
    """
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value is None:
            continue
        if "choices" in f.metadata:
            check_choice(f.metadata.get("option", flag(f.name)), value, f.metadata["choices"], f.metadata.get("why", ""))
            continue
        bounds = {k: f.metadata[k] for k in BOUNDS if k in f.metadata}
        if set(bounds) == {"why"}:
            bounds = {}
        values = value if isinstance(value, (list, tuple)) else [value]
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numeric or (not bounds and not any(isinstance(v, float) for v in numeric)):
            continue
        for v in numeric:
            check_number(f.metadata.get("option", flag(f.name)), v, **bounds)


@dataclass
class RuntimeOptions:
    """On which device, in which precision, and whether model code from the Hub may run: every config that loads a
    model has these three, declared once here."""

    device: str = option("auto", "cpu, cuda, cuda:N or auto")
    dtype: str = option("auto", "float32, bfloat16, float16 or auto (float32 on CPU, bfloat16 on CUDA)")
    trust_remote_code: bool = option(False, "allow model code from the Hub (off unless you ask)")


@dataclass
class _TrainingModel:
    model: str = option(DEFAULT_MODEL, "packaged alias (smollm2-135m, gemma3-270m), local folder or Hugging Face id")


@dataclass
class _PromptsModel:
    model: str | None = option(None, f"model (default: the one the prompt was trained on, else {DEFAULT_MODEL}): "
                                     "alias, local folder or hub id")


# A dataclass lists its bases' fields in reverse order of the bases: `model` comes first, then RuntimeOptions'.
@dataclass
class ModelOptions(RuntimeOptions, _TrainingModel):
    """Which model, on which device, in which precision."""


@dataclass
class PromptModelOptions(RuntimeOptions, _PromptsModel):
    """ModelOptions for a command that reads a saved prompt: the model defaults to the one it was trained on."""


@dataclass
class DataOptions:
    """Which task, and the folder its data is read from (enough for a built-in or a file task as it stands)."""

    task: str = option("sst2", "built-in task (sst2, sst5, subj, agnews, trec), a CSV/TSV/JSONL file or folder, or hub:NAME")
    data_dir: str | None = option(None, "folder with <task>/train.jsonl etc. (default: $SOFTSCOPE_DATA, then ../shared/data)")

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class TaskOptions(DataOptions):
    """Which task and how to read it: DataOptions plus the columns, verbalizer words and size caps of a user task."""

    text_column: str | None = option(None, "text column of a user file (default: text)")
    label_column: str | None = option(None, "label column of a user file (default: label)")
    text_b_column: str | None = option(None, "second text column of a sentence-pair task (default: premise/hypothesis, "
                                             "sentence1/sentence2 when present)")
    template: str | None = option(None, "input template with {text} (and {text_b}), e.g. 'Review : {text} Label :' "
                                        "(default: the task's own)")
    label_words: list[str] | None = option(None, "verbalizer words, one per class in class order")
    max_train: int | None = option(None, "use at most this many training examples (seeded)", ge=1)
    max_test: int | None = option(None, "use at most this many test examples (seeded)", ge=1)

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class TaskReadOptions:
    """Which task a reading command scores a saved prompt on: every field defaults to what the prompt remembers."""

    task: str | None = option(None, "task (default: the prompt's own): built-in name, data file or folder, or hub:NAME")
    data_dir: str | None = option(None, "data folder for a built-in task (default: the prompt's, then $SOFTSCOPE_DATA)")
    text_column: str | None = option(None, "text column (default: the prompt's)")
    text_b_column: str | None = option(None, "second text column of a sentence-pair task (default: the prompt's)")
    label_column: str | None = option(None, "label column (default: the prompt's)")
    template: str | None = option(None, "input template with {text} (and {text_b}) (default: the prompt's)")
    label_words: list[str] | None = option(None, "verbalizer words, one per class in class order (default: the prompt's)")
    max_length: int | None = option(None, "truncate formatted inputs to this many tokens (default: the prompt's)", ge=1)
    allow_other_task: bool = option(False, "score the prompt with other classes, label words or template than it was "
                                      "trained with (refused otherwise)")

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def read_fields(cls) -> tuple:
        """The fields of this group (a subclass group adds its own by overriding this)."""
        return fields(TaskReadOptions)

    def given(self) -> dict:
        """The reading options the user set (None = use the prompt's own)."""
        return {f.name: getattr(self, f.name) for f in self.read_fields()
                if f.name != "allow_other_task" and getattr(self, f.name) is not None}


@dataclass
class ReadOptions(TaskReadOptions):
    """TaskReadOptions plus how inputs are scored (verbalizer, test subset): for commands that score test inputs."""

    verbalizer: str | None = option(None, "first, full or auto (default: the prompt's)",
                                     choices=("first", "full", "auto"))
    max_test: int | None = option(None, "seeded test subset (default: the one the prompt's accuracy was measured on)",
                             ge=1)

    @classmethod
    def read_fields(cls) -> tuple:
        return fields(ReadOptions)


@dataclass
class TrainConfig(ModelOptions, TaskOptions):
    """Prompt tuning: n virtual tokens before the text of a frozen LM, trained on the label-token loss."""

    tokens: int = option(7, "number of virtual tokens", ge=1)
    steps: int = option(300, "optimizer steps", ge=0)
    batch_size: int = option(8, "examples per step", ge=1)
    lr: float = option(1e-2, "AdamW learning rate (small models like 1e-2..3e-2)", **LR)
    weight_decay: float = option(0.0, "AdamW weight decay", ge=0)
    schedule: str = option("linear", "linear (decay to 0, no warm-up) or constant", choices=("linear", "constant"))
    grad_clip: float = option(1.0, "clip the prompt gradient norm (0 = off)", ge=0)
    init: str = option("vocab", "vocab (embeddings of random vocabulary tokens), random (Gaussian at embedding scale) or text",
                      choices=("vocab", "random", "text"))
    init_text: str = option("Classify the sentiment of this sentence as positive or negative.", "text for --init text")
    checkpoint_every: int = option(25, "save a checkpoint (with its eval accuracy) every this many steps; step 0 always",
                             ge=1)
    eval_examples: int = option(300, "seeded test subset for checkpoint accuracy (0 = whole test set)", ge=0)
    final_eval: str = option("full", "final prompt on: full (whole test set), subset, or none",
                             choices=("full", "subset", "none"))
    max_length: int = option(80, "truncate formatted inputs to this many tokens", ge=1)
    verbalizer: str = option("auto", "first (label word's first token), full (all its tokens) or auto",
                             choices=("first", "full", "auto"))
    placement: str = option("after_bos", "virtual tokens after the tokenizer's BOS (after_bos) or before it as PEFT does "
                                    "(before_bos: an exported adapter then scores the same in PEFT)",
                             choices=("after_bos", "before_bos"))
    bucket: bool = option(True, "form batches from examples of similar length (less padding, same objective)")
    bf16_autocast: str = option("off", "bfloat16 autocast for forward/backward: off (float32, the same numbers on every "
                                  "CPU), on, or auto (on only where the device has native bf16: CUDA, AVX512-BF16/AMX)",
                                choices=("off", "on", "auto"))
    eval_batch_size: int = option(32, "batch size for evaluation", ge=1)
    seed: int = option(0, "seed for init, data order and eval subset", **SEED)

    def __post_init__(self) -> None:
        self.coerce()
        validate(self)

    def coerce(self) -> None:
        """Accept the API's shorthands before validation (subclasses that validate early call it first)."""
        if isinstance(self.bf16_autocast, bool):  # API callers may pass True/False
            self.bf16_autocast = "on" if self.bf16_autocast else "off"


def subconfig(cls, cfg: Any, **override):
    """Build dataclass `cls` from the same-named fields of another config (e.g. TrainConfig from a sweep's)."""
    names = {f.name for f in fields(cls)}
    kw = {k: v for k, v in vars(cfg).items() if k in names}
    kw.update(override)
    return cls(**kw)
