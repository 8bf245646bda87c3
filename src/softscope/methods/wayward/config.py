"""Waywardness settings: the γ grid, the protocols (paper, cpu, quick, full) and WaywardConfig."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...engine.config import TrainConfig, check_presets, option, validate
from ...engine.errors import SoftscopeError
from ...engine.executor import ExecutorOptions
from ...engine.runs import register_kind
from ...engine.stats import N_BOOT  # also the drop's resamples (examples × resamples stay a few MB)


KIND = register_kind("wayward")

PAPER_GAMMAS = [0.0, 1e-4, 5e-4, 1e-3, 3e-3, 5e-3, 1e-2, 3e-2]

# Presets. quick: sized for 2 free CPU cores (< 90 min for SST-2 and AG News × both packaged models): 8 targets —
# 4 task definitions spread over natural_prompts.json (every 8th) alternating with one Pile sentence each from
# pile_n{4,7,14,28} for the length axis — 4 γ, 16 steps at lr 3e-2 (batch 8) trained under bf16 autocast where the
# CPU has native bf16 ("auto": faster on AVX512-BF16, emulated and far slower elsewhere, so float32 there; the
# distance term and Adam stay float32), accuracy
# scored in float32 on a fixed seeded 200-example test subset. The γ = 0
# baseline starts from vocabulary embeddings (plain prompt tuning) and the γ > 0 prompts start at e(t): in 16 steps
# Adam moves a coordinate at most Σ lr ≈ 0.24, too little to carry a vocabulary start into the target's
# nearest-neighbour cells (measured on SmolLM2/SST-2: distance 18.3 → 16.9 at γ = 3e-2, F1 0). So the short sweep
# asks: does a prompt held at t learn the task as well as a free one?
# full: the paper's targets and γ grid (32 unrelated definitions + the task's 5 true descriptions, 8 γ) trained the
# softscope way (vocabulary start, one seed, 300 steps): NOT the authors' protocol, which is `paper`.
# paper: the authors' main.py/run.py as released — init "manual" (every γ, γ = 0 included, starts at e(t)), 2000
# steps, AdamW lr 0.01, no warm-up, linear decay, grad clip 1.0, batch 8 (4 on their "long" datasets, with inputs cut
# at 256 tokens instead of 128), train seeds 1, 10, 100 with accuracy and prompt-F1 averaged over seeds per γ, the
# γ grid of their "effect of γ" runs, F1 threshold 0.98 (strictly above), their selection rule (see per_target),
# the final step's prompt, the whole test set. GPU work: 37 targets × 8 γ × 3 seeds × 2000 steps.
# cpu: a CPU-sized protocol that can test the claim — γ = 0 and γ = 1e-2 (the authors' default γ) both from e(t),
# each trained (constant lr 0.01, batch 8, at most 400 steps) until its dev accuracy has not improved for 3
# evaluations 25 steps apart, the best-dev prompt kept; the quick protocol's 4 shortest targets; 300 test examples;
# the drop vs γ = 0 with a 95% paired bootstrap interval, "within 2 points" only when the whole interval is.
PAPER_LONG_TASKS = ("subj", "agnews")  # the authors halve the batch and allow 256 tokens on these
PAPER_LABEL_WORDS = {"sst2": ["terrible", "great"], "agnews": ["World", "Sports", "Business", "Technology"]}
PROTOCOLS: dict[str, dict] = {
    "quick": {"gamma": [0.0, 1e-3, 1e-2, 3e-2], "steps": 16, "lr": 3e-2, "batch_size": 8, "test_examples": 200,
              "start": "mixed", "bf16_autocast": "auto"},
    "full": {"gamma": PAPER_GAMMAS, "steps": 300, "lr": 1e-2, "batch_size": 8, "test_examples": 0, "start": "init"},
    "paper": {"gamma": PAPER_GAMMAS, "steps": 2000, "lr": 1e-2, "batch_size": 8, "schedule": "linear",
              "grad_clip": 1.0, "weight_decay": 0.0, "max_length": 128, "test_examples": 0, "start": "target",
              "train_seeds": [1, 10, 100], "f1_threshold": 0.98, "selection": "paper", "patience": 0,
              "distance_norm": "none", "bf16_autocast": "off"},
    "cpu": {"gamma": [0.0, 1e-2], "steps": 400, "lr": 1e-2, "batch_size": 8, "schedule": "constant",
            "grad_clip": 1.0, "test_examples": 300, "start": "target", "train_seeds": None, "f1_threshold": 0.9,
            "within": 0.02, "selection": "softscope", "patience": 3, "eval_every": 25, "dev_examples": 200,
            "distance_norm": "none"},
}


@dataclass
class WaywardConfig(TrainConfig, ExecutorOptions):
    """A γ sweep over target texts: train, project (Euclidean), score prompt-F1, accuracy and distance."""

    targets: list[str] | None = option(None, "target files: JSON {name: text} or [texts], or .txt with one per line "
                                        "(bare names are looked up in <data-dir>/targets/)")
    target: list[str] | None = option(None, "target texts given directly (repeat --target for several)")
    gamma: list[float] = option(PAPER_GAMMAS, "γ values of the distance term (0 = plain prompt tuning)", ge=0)
    f1_threshold: float = option(0.9, "prompt-F1 a projection must reach to count as reading as the target", gt=0, le=1)
    within: float = option(0.02, "accuracy margin to the reference prompt that counts as 'no loss' (0.02 = 2 points); "
                            "with per-example scores it is claimed only when the whole 95% paired interval is inside",
                      ge=0, le=1)
    protocol: str = option("custom", "paper (the authors' released settings), cpu (early-stopped test of the claim), "
                                "quick (16-step subset), full (paper targets/γ, softscope training) or custom; a "
                                "preset fixes the targets and training settings",
                           choices=(*PROTOCOLS, "custom"))
    train_seeds: list[int] | None = option(None, "train seeds (data order; init for --start init): one prompt per seed "
                                            "and γ, accuracy and F1 averaged over seeds (default: --seed)")
    selection: str = option("softscope", "softscope (most accurate prompt with F1 >= threshold, drop vs γ = 0) or paper "
                                    "(the authors': γ by seed-mean accuracy, first with F1 > threshold, else the most "
                                    "accurate; drop vs the best accuracy)",
                            choices=("softscope", "paper"))
    distance_norm: str = option("none", "none (Σ‖p − e(t)‖²/n, the paper's) or embedding (divided by the mean squared norm "
                                   "of the input embeddings, so one γ weighs the same on models with other scales)",
                                choices=("none", "embedding"))
    patience: int = option(0, "early stopping: end a prompt's training once its dev accuracy has not improved for this many "
                         "evaluations, keep its best-dev prompt (0 = train all --steps, keep the last)", ge=0)
    eval_every: int = option(25, "steps between dev evaluations when --patience > 0", ge=1)
    dev_examples: int = option(200, "dev examples for early stopping (the task's dev split, else held out of train)", ge=1)
    bootstrap: int = option(N_BOOT, "paired bootstrap resamples for the drop's 95% interval (0 = point estimates only)",
                       ge=0)
    baseline_min: float = option(0.0, "the accuracy the γ = 0 prompt must reach for a target to count (0 = no check)",
                            ge=0, le=1)
    max_targets: int | None = option(None, "use only the first N targets", ge=1)
    test_examples: int = option(500, "fixed seeded test subset for accuracy (0 = whole test set)", ge=0)
    template: str = option("wayward", "wayward (the paper's template for built-in tasks) or task (the task's default)",
                           choices=("wayward", "task"))
    start: str = option("init", "init (every γ from --init), target (every γ from e(t)) or mixed (γ = 0 from --init, "
                           "γ > 0 from e(t))",
                        choices=("init", "target", "mixed"))
    batched: bool = option(True, "train all γ of a target in one batched pass (training.train_many) instead of one by one")
    eval_bf16: bool = option(False, "score accuracy under bf16 autocast too (default: float32 scoring even when "
                               "--bf16-autocast trains in mixed precision)")

    def __post_init__(self) -> None:
        for k, v in PROTOCOLS.get(self.protocol, {}).items():
            setattr(self, k, list(v) if isinstance(v, list) else v)
        key = re.sub(r"[-_ ]", "", self.task.strip().lower())
        if self.protocol == "paper":
            if key in PAPER_LONG_TASKS:
                self.batch_size, self.max_length = 4, 256
            if self.label_words is None and key in PAPER_LABEL_WORDS:  # their verbalizer, unless you pass one
                self.label_words = list(PAPER_LABEL_WORDS[key])
        try:
            self.gamma = [float(g) for g in self.gamma]
        except ValueError:
            raise SoftscopeError(f"--gamma {self.gamma}: give numbers separated by commas, e.g. 0,1e-3,1e-2") from None
        if not self.gamma:
            raise SoftscopeError("--gamma needs one or more values >= 0")
        self.coerce()
        validate(self)
        if 0.0 not in self.gamma:
            raise SoftscopeError("--gamma must include 0: the accuracy drop is measured against the γ = 0 prompt")
        self.gamma = sorted(set(self.gamma))
        if isinstance(self.target, str):
            self.target = [self.target]
        if self.train_seeds is not None:
            try:
                self.train_seeds = list(dict.fromkeys(int(s) for s in self.train_seeds))
            except ValueError:
                raise SoftscopeError(f"--train-seeds {self.train_seeds}: give integers, e.g. 1,10,100") from None
            if not self.train_seeds:
                raise SoftscopeError("--train-seeds needs one or more seeds")
        super().__post_init__()
        ExecutorOptions.__post_init__(self)

    @property
    def seeds(self) -> list[int]:
        """The train seeds this sweep runs (one prompt per seed and γ)."""
        return list(self.train_seeds) if self.train_seeds else [self.seed]


check_presets(WaywardConfig, PROTOCOLS)
