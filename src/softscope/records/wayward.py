"""Prompt waywardness: one row per trained prompt (target × γ × seed) and the sweep's summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Record, declare, doc


@declare
@dataclass
class WaywardRow(Record):
    """wayward.jsonl: one prompt trained with task loss + γ·‖p − e(target)‖², scored and projected."""

    FILES = ("wayward.jsonl",)
    ROWS = True
    PLOT = (("f1",), ("accuracy",), ("gamma", "target"))
    target: str | None = doc("the target's name (file/index)")
    target_text: str | None = doc("the target text t")
    n_tokens: int | None = doc("prompt length = the target's length in tokens", unit="tokens")
    gamma: float | None = doc("γ, the weight of the distance term")
    seed: int | None = doc("training seed")
    accuracy: float | None = doc("test accuracy of the trained prompt")
    projection: str | None = doc("the prompt projected to its nearest tokens, as text")
    projection_ids: list[int] = doc("those token ids", factory=list)
    f1: float | None = doc("prompt-F1 of the projection against the target's tokens")
    token_match: float | None = doc("share of positions whose nearest token is the target's token")
    distance: float | None = doc("‖p − e(t)‖² averaged over positions")
    distance_scaled: float | None = doc("distance divided by the distance normaliser (embedding mean ‖e‖² or 1)")
    start_accuracy: float | None = doc("test accuracy of e(t) itself, untrained")
    final_task_loss: float | None = doc("the training loss at the last step")
    test_examples: int | None = doc("test examples scored", unit="examples")
    steps: int | None = doc("training steps (the selected step under early stopping)", unit="steps")
    correct: str | None = doc("1/0 per test example: correct or not (paired tests between γ)")
    model: str | None = doc("model name")
    task: str | None = doc("task name")
    seconds: float | None = doc("training plus scoring time of this prompt", unit="s")
    dev_accuracy: float | None = doc("early stopping: best dev accuracy", optional=True)
    stopped_at: int | None = doc("early stopping: the step training stopped", optional=True, unit="steps")
    dev_history: list[Any] | None = doc("early stopping: dev accuracy at each evaluation", optional=True)
    dev_examples: int | None = doc("early stopping: dev set size", optional=True, unit="examples")
    prompt: str | None = doc("the trained prompt file, relative to the run folder", optional=True)


@dataclass
class GammaStats(Record):
    """All prompts trained at one γ."""

    rows: int | None = doc("prompts")
    mean_accuracy: float | None = doc("mean test accuracy")
    mean_f1: float | None = doc("mean prompt-F1")
    share_f1_at_threshold: float | None = doc("share reaching the F1 threshold")
    mean_distance: float | None = doc("mean distance to the target")


@dataclass
class TargetResult(Record):
    """One target: the selected γ (the selection rule), its F1 and the accuracy drop against γ = 0."""

    target: str | None = doc("target name")
    n_tokens: int | None = doc("its length", unit="tokens")
    acc_gamma0: float | None = doc("accuracy at γ = 0 (mean over seeds)")
    acc_start: float | None = doc("accuracy of e(t) untrained")
    seeds: int | None = doc("training seeds")
    reference_gamma: float | None = doc("the γ the drop is measured against")
    reached: bool | None = doc("some γ reached the F1 threshold")
    best_gamma: float | None = doc("the selected γ")
    best_f1: float | None = doc("its prompt-F1")
    best_accuracy: float | None = doc("its test accuracy")
    drop: float | None = doc("accuracy drop from the reference γ to the selected one")
    drop_ci95: list[float] | None = doc("paired bootstrap 95% interval of the drop (null with one test set)")
    drop_vs_gamma0: float | None = doc("acc_gamma0 − best_accuracy")
    within: bool | None = doc("reached, baseline ok, and the drop's bound within the tolerance")
    within_basis: str | None = doc("ci95 (the interval's upper bound) or point (the drop itself)")
    significant_drop: bool | None = doc("the drop's interval excludes 0")
    baseline_ok: bool | None = doc("γ = 0 accuracy reaches the baseline minimum")
    best_steps: int | None = doc("training steps of the selected prompt", unit="steps")
    gamma0_steps: int | None = doc("training steps at γ = 0", unit="steps")
    max_f1: float | None = doc("the best F1 over every γ")


@declare
@dataclass
class WaywardSummary(Record):
    """wayward_summary.json: how many targets a task-solving prompt could be pulled to, at what accuracy cost."""

    FILES = ("wayward_summary.json",)
    f1_threshold: float | None = doc("prompt-F1 a projection must reach to count as the target")
    within: float | None = doc("the accuracy-drop tolerance")
    selection: str | None = doc("selection rule: softscope (largest γ within tolerance) or paper")
    targets: int | None = doc("targets")
    rows: int | None = doc("prompts trained")
    share_reached: float | None = doc("share of targets some γ reached")
    mean_drop: float | None = doc("mean drop over reached targets")
    median_drop: float | None = doc("median drop over reached targets")
    share_within: float | None = doc("share of all targets reached within tolerance")
    share_within_of_reached: float | None = doc("share of reached targets within tolerance")
    significant_drops: int | None = doc("targets whose drop is significant")
    below_baseline: list[str] = doc("targets whose γ = 0 prompt missed the baseline", factory=list)
    baseline_min: float | None = doc("the baseline minimum accuracy")
    mean_acc_gamma0: float | None = doc("mean γ = 0 accuracy")
    by_gamma: dict[str, GammaStats] = doc("per γ (formatted %g)", factory=dict)
    per_target: list[TargetResult] = doc("per target", factory=list)
    model: str | None = doc("model name")
    task: str | None = doc("task name")
    protocol: str | None = doc("protocol preset (paper or softscope)")
    steps: int | None = doc("training steps", unit="steps")
    lr: float | None = doc("learning rate")
    gamma: list[float] = doc("the γ grid", factory=list)
    train_seeds: list[int] = doc("training seeds", factory=list)
    test_examples: int | None = doc("test examples per prompt", unit="examples")
    dev_examples: int | None = doc("dev examples (early stopping)", unit="examples")
    batched: bool | None = doc("the γ of a target trained together as one batch of prompts")
    distance_norm: str | None = doc("distance normaliser: embedding (mean ‖e‖²) or none")
    embedding_mean_sq_norm: float | None = doc("the model's mean squared embedding norm")
    compute_seconds: float | None = doc("sum of the rows' seconds", unit="s")
    wall_seconds_this_call: float | None = doc("wall time of the call that wrote this", unit="s")


@declare
@dataclass
class WaywardCompareRow(Record):
    """compare.json (`wayward-compare`, a JSON list): one sweep's headline figures, recomputed from its wayward.jsonl."""

    FILES = ("compare.json",)
    ROWS = True
    run: str | None = doc("the sweep's run folder")
    model: str | None = doc("model name")
    task: str | None = doc("task name")
    layers: int | None = doc("the model's layers")
    width: int | None = doc("its embedding width")
    embedding_mean_sq_norm: float | None = doc("its mean squared embedding norm")
    distance_norm: str | None = doc("distance normaliser of the sweep")
    targets: int | None = doc("targets")
    rows: int | None = doc("prompts trained")
    mean_acc_gamma0: float | None = doc("mean γ = 0 accuracy")
    share_reached: float | None = doc("share of targets some γ reached")
    share_within: float | None = doc("share of targets reached within tolerance")
    mean_drop: float | None = doc("mean drop over reached targets")
    median_drop: float | None = doc("median drop over reached targets")
    compute_seconds: float | None = doc("sum of the rows' seconds", unit="s")
