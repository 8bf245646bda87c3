"""InSPEcT settings: the metrics, cut rules and protocols (softscope, paper), DescribeConfig and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...engine.config import SEED, PromptModelOptions, TaskReadOptions, check_presets, option
from ...engine.errors import SoftscopeError
from ...engine.executor import ExecutorOptions
from ...engine.patching import SOURCE_PASSES, STOPS
from ...engine.runs import register_kind
from ...engine.target_prompts import MARKER, POOLS


KIND = register_kind("describe")

DESCRIPTION_METRICS = ("class_rate", "rouge1", "rouge2", "rougeL", "similarity")
CUT_CHARS = "\n$.|"
CUTS = ("softscope", "paper")
PROTOCOLS = ("softscope", "paper")
# what --protocol paper sets (fields still at their softscope default only): the authors' released code
PAPER = {"source_pass": "after-block-0", "stop": "paper", "cut": "paper", "layers": "all", "max_new_tokens": 60,
         "n_targets": 1}
COPY_N, COPY_THRESHOLD = 4, 0.5  # a description copying a target-prompt demo: see mark_copies


@dataclass
class DescribeConfig(PromptModelOptions, TaskReadOptions, ExecutorOptions):
    """Describe the soft prompt(s) of a run dir, a prompt file or a PEFT adapter dir over a layer grid."""

    layers: str = option("every:3", "layer pairs: all (source 2..L-2 x target 2..L-2), every:K, band:A-B, or pairs 4:4,8:4")
    target_prompt: str = option("plain", f"demonstration pool ({', '.join(POOLS)}) or your own text with {MARKER} "
                                    "where the placeholders go")
    n_targets: int = option(3, "seeded target prompts per checkpoint (seeds seed, seed+1, ...; pools only)", ge=1)
    demos: int = option(3, "demonstrations per target prompt", ge=1)
    max_new_tokens: int = option(60, "greedy tokens to generate per pair", ge=1)
    seed: int = option(0, "seed of the first target prompt", **SEED)
    checkpoints: str = option("all", "for a run dir: all, last, or steps like 0,40,80")
    classes: list[str] | None = option(None, "class names of a custom task (default: from the prompt or --task)")
    references: list[str] | None = option(None, "extra reference descriptions (needed for custom tasks)")
    keep_copies: bool = option(False, f"let descriptions that copy a target-prompt demonstration (≥ {COPY_THRESHOLD:.0%} of "
                                 f"their words in {COPY_N}-word runs of one demo) be the best description")
    top_k: int = option(10, "the top-k similarities averaged per checkpoint (a steadier score than the max)", ge=1)
    batch_size: int = option(64, "layer pairs generated together", ge=1)
    elaborated: bool = option(False, "bias probe: cue-naming target prompts (pool 'elaborated' unless --target-prompt names "
                                "another) and the words descriptions mention beyond class names and references")
    source_pass: str = option("embeddings", "source states: embeddings (the prompt as input embeddings, as trained) or "
                                       "after-block-0 (tokens ' x' x n, block 0's output overwritten: the authors' code)",
                              choices=SOURCE_PASSES)
    stop: str = option("eos", "end a description at: eos, none (always max-new-tokens), or paper (the authors' stop token, "
                         "the first id of encode('$'))",
                       choices=STOPS)
    cut: str = option("softscope", "description cut: softscope (first \\n $ . | past 20%) or paper (the authors' rule)",
                      choices=CUTS)
    protocol: str = option("softscope", "paper: the authors' procedure (after-block-0, --stop paper, --cut paper, --layers "
                                   "all, 60 tokens, one target prompt) for every setting left at its default",
                           choices=PROTOCOLS)
    control: bool = option(False, "positive control: also describe a prompt set to e(true task description)")
    control_text: str | None = option(None, "the control's description (default: the task's first reference description)")

    def __post_init__(self) -> None:
        TaskReadOptions.__post_init__(self)
        ExecutorOptions.__post_init__(self)
        if self.protocol == "paper":
            import dataclasses

            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for k, v in PAPER.items():
                if getattr(self, k) == defaults[k]:
                    setattr(self, k, v)
        if self.control_text is not None and not self.control_text.strip():
            raise SoftscopeError("--control-text must not be empty")
        if self.elaborated and self.target_prompt == "plain":
            self.target_prompt = "elaborated"
        if self.target_prompt not in POOLS and MARKER not in self.target_prompt:
            raise SoftscopeError(f"--target-prompt {self.target_prompt!r}: use {', '.join(POOLS)} or a text with "
                                 f"{MARKER} where the soft prompt goes")
        if self.target_prompt not in POOLS and self.n_targets != 1:
            self.n_targets = 1  # a user's own text is one target prompt
        c = self.checkpoints.strip().lower()
        if c not in ("all", "last") and not all(p.strip().isdigit() for p in c.split(",")):
            raise SoftscopeError(f"--checkpoints {self.checkpoints!r}: use all, last or steps like 0,40,80")


check_presets(DescribeConfig, {"paper": PAPER})


@dataclass
class DescribeResult:
    out_dir: Path
    rows: list[dict]
    summary: dict
    seconds: float = 0.0
    plots: list[Path] = field(default_factory=list)


# ---- what gets described -------------------------------------------------------------------------------------
