"""InSPEcT (`describe`): one row per generated description, the per-checkpoint scores and their correlation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import CI, Record, declare, doc



@declare
@dataclass
class DescriptionRow(Record):
    """descriptions.jsonl: one description a (source layer, target layer, target prompt) wrote for one prompt.

    A describe run scores it (class rate, ROUGE, similarity, demo overlap); the bias probe's rows carry the cue
    mention flags instead."""

    FILES = ("descriptions.jsonl",)
    ROWS = True
    ALIASES = {"src": "source_layer", "tgt": "target_layer", "description": "text",
               "semantic_similarity": "similarity"}  # keys an older softscope wrote
    checkpoint: str | None = doc("the described prompt: its checkpoint file, or control", optional=True)
    step: int | None = doc("the checkpoint's training step", optional=True, unit="steps")
    accuracy: float | None = doc("the checkpoint's recorded accuracy", optional=True)
    target_seed: int | None = doc("seed of the target prompt the states were patched into")
    source_layer: int | None = doc("layer whose hidden states were read from the soft prompt's positions")
    target_layer: int | None = doc("layer of the target prompt they were patched into")
    text: str | None = doc("the whole generated text")
    cut: str | None = doc("the description as scored: the text cut at the first line or sentence end")
    class_rate: float | None = doc("share of the task's class names the description names", optional=True)
    rouge1: float | None = doc("ROUGE-1 F against the best-matching reference description", optional=True)
    rouge2: float | None = doc("ROUGE-2 F against the references", optional=True)
    rougeL: float | None = doc("ROUGE-L F against the references", optional=True)
    similarity: float | None = doc("cosine similarity (MiniLM sentence embeddings) to the closest reference",
                                   optional=True)
    demo_overlap: float | None = doc("largest share of its words copied from one demonstration of its target prompt",
                                     optional=True)
    copies_demo: bool | None = doc("demo_overlap reaches the copy threshold: it repeats a demonstration", optional=True)
    mention_string: bool | None = doc("bias probe: names the planted cue as a string", optional=True)
    mention_similarity: float | None = doc("bias probe: similarity of the text to the cue", optional=True)
    mention: bool | None = doc("bias probe: mentions the cue (string or embedding rule)", optional=True)
    control_mention: bool | None = doc("bias probe: mentions the control cue", optional=True)

    SCORES = ("similarity", "class_rate", "rouge1", "rougeL", "rouge2")  # the per-row scores, as pages prefer them

    def score(self, name: str) -> float | None:
        """One of SCORES by name (what a page lets the reader choose)."""
        if name not in self.SCORES:
            raise ValueError(f"unknown score {name!r}: use {', '.join(self.SCORES)}")
        return getattr(self, name)

    @property
    def shown_text(self) -> str:
        """The text a page shows: the cut description, else the whole text."""
        return self.cut if self.cut is not None else (self.text or "")


@dataclass
class BestDescription(Record):
    """The best description of a checkpoint for one metric (the paper's max over the grid)."""

    score: float | None = doc("its score for that metric")
    source_layer: int | None = doc("source layer")
    target_layer: int | None = doc("target layer")
    target_seed: int | None = doc("target prompt seed")
    cut: str | None = doc("the description")
    copies_demo: bool | None = doc("it copies a demonstration")


@dataclass
class CheckpointScores(Record):
    """One described checkpoint (or the control): its accuracy and every per-checkpoint score."""

    checkpoint: str | None = doc("checkpoint file", optional=True)
    step: int | None = doc("training step", optional=True, unit="steps")
    accuracy: float | None = doc("recorded accuracy", optional=True)
    accuracy_examples: int | None = doc("examples behind that accuracy", optional=True, unit="examples")
    accuracy_ci95: list[float] | None = doc(f"Wilson {CI} of the accuracy", optional=True)
    text: str | None = doc("control only: the true task description embedded as the prompt", optional=True)
    tokens: int | None = doc("control only: its length", optional=True, unit="tokens")
    pairs: int | None = doc("layer pairs described")
    target_prompts: int | None = doc("target prompts per pair")
    copies: int | None = doc("descriptions that copy a demonstration")
    best_excludes_copies: bool | None = doc("best was taken over the non-copying descriptions")
    best: dict[str, BestDescription] = doc("per metric (class_rate, rouge1, rouge2, rougeL, similarity): the best "
                                           "description", factory=dict)
    class_rate_mean: float | None = doc("mean class rate over the grid")
    naming_share: float | None = doc("share of descriptions naming every class")
    similarity_topk: float | None = doc("mean similarity of the top-k descriptions (the primary score)")
    similarity_mean: float | None = doc("mean similarity over the grid")
    rouge1_mean: float | None = doc("mean ROUGE-1 over the grid")
    max_per_target: dict[str, list[float]] = doc("per metric: the max over the grid for each target prompt",
                                                 factory=dict)
    class_rate_max_mean: float | None = doc("class rate max per target prompt, averaged")
    rouge1_max_mean: float | None = doc("ROUGE-1 max per target prompt, averaged")
    rouge2_max_mean: float | None = doc("ROUGE-2 max per target prompt, averaged")
    rougeL_max_mean: float | None = doc("ROUGE-L max per target prompt, averaged")
    similarity_max_mean: float | None = doc("similarity max per target prompt, averaged")
    unexpected_words: list[dict[str, Any]] | None = doc("--elaborated: words the descriptions use beyond the task's "
                                                        "classes, references and target prompts", optional=True)

    # the columns a table of checkpoints shows first (then the other scalar fields)
    COLUMNS = ("step", "accuracy", "pairs", "target_prompts", "class_rate_mean", "naming_share", "similarity_topk",
               "similarity_max_mean", "rouge1_mean")

    @classmethod
    def table_columns(cls, cks: list["CheckpointScores"]) -> list[str]:
        """The columns a table of these checkpoints shows: COLUMNS that are set, then other scalar fields (not the
        file name), ten at most, and the unexpected words when an elaborated run found some."""
        dicts = [c.shown() for c in cks]
        cols = [k for k in cls.COLUMNS if any(k in d for d in dicts)]
        cols += [k for k in dict.fromkeys(k for d in dicts for k in d)
                 if k not in cols and k != "checkpoint" and all(not isinstance(d.get(k), (dict, list)) for d in dicts)]
        cols = cols[:10]
        if any(c.unexpected_words for c in cks):
            cols.append("unexpected_words")
        return cols

    def score(self, key: str) -> float | None:
        """A per-checkpoint score by name: a field, or best.<metric> (the max over the grid)."""
        if key.startswith("best."):
            best = self.best.get(key[5:])
            return best.score if best is not None else None
        if key not in self.__dataclass_fields__:
            raise ValueError(f"unknown checkpoint score {key!r}")
        return getattr(self, key)


@dataclass
class Correlation(Record):
    """Rank and linear correlation of two per-prompt quantities, with bootstrap intervals."""

    n: int | None = doc("points")
    spearman: float | None = doc("Spearman ρ (null: constant values or too few points)")
    spearman_p: float | None = doc("its p-value")
    spearman_ci95: list[float | None] | None = doc(f"bootstrap {CI} of ρ (null ends: too few points)")
    pearson: float | None = doc("Pearson r")
    pearson_p: float | None = doc("its p-value")
    pearson_ci95: list[float | None] | None = doc(f"bootstrap {CI} of r (null ends: too few points)")


@declare
@dataclass
class DescribeSummary(Record):
    """describe_summary.json: per-checkpoint scores and their correlation with accuracy."""

    FILES = ("describe_summary.json",)
    task: str | None = doc("task name")
    model: str | None = doc("model name")
    source: str | None = doc("the run folder or prompt file described")
    classes: list[str] = doc("the task's classes", factory=list)
    layers: str | None = doc("the layer grid as given (e.g. band:2-3)")
    pairs: int | None = doc("layer pairs in the grid")
    target_prompts: int | None = doc("target prompts per pair")
    max_new_tokens: int | None = doc("tokens generated per description", unit="tokens")
    checkpoints: list[CheckpointScores] = doc("every described checkpoint, in step order", factory=list)
    primary_score: str | None = doc("the score fixed before the experiment (similarity_topk)")
    secondary_scores: list[str] = doc("the other scores, by name", factory=list)
    correlation: dict[str, Correlation] = doc("per score: its correlation with accuracy over checkpoints (3 or more)",
                                              factory=dict)
    source_pass: str | None = doc("how source states were read (prompt alone or with the template)")
    stop: str | None = doc("generation stop rule")
    cut: str | None = doc("how a description was cut before scoring")
    protocol: str | None = doc("the protocol preset (paper or softscope)")
    seconds: float | None = doc("wall time", unit="s")
    control: CheckpointScores | None = doc("the positive control: e(true task description) described on the same grid",
                                           optional=True)
