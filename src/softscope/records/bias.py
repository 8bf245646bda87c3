"""The bias probe: planted-feature data, one row per trained prompt, the positive control and the summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Record, declare, doc
from .describe import Correlation


@dataclass
class BiasMeasures(Record):
    """What the probe measures of one prompt on held-out examples with and without the planted cue."""

    biased_prediction_rate: float | None = doc("P(favoured | cue) − P(favoured | no cue) on examples of the other "
                                               "classes: how far the cue pulls predictions")
    feature_flip_rate: float | None = doc("share of eligible examples whose prediction turns to the favoured class "
                                          "when the cue is inserted")
    control_flip_rate: float | None = doc("the same with the control cue (a cue the prompt never saw)")
    eligible: int | None = doc("held-out examples not already predicted as the favoured class", unit="examples")
    examples: int | None = doc("held-out examples", unit="examples")
    away_flip_rate: float | None = doc("share turning away from the favoured class with the cue")
    favoured_logprob_shift: float | None = doc("mean change of the favoured class's log-probability with the cue")
    control_logprob_shift: float | None = doc("the same with the control cue")
    changed_by_feature: float | None = doc("share of predictions the cue changes at all")
    predicted_favoured_clean: float | None = doc("share predicted favoured without the cue")
    predicted_favoured_feature: float | None = doc("share predicted favoured with the cue")
    accuracy: float | None = doc("clean held-out accuracy")
    mention_rate: float | None = doc("share of the prompt's InSPEcT descriptions that mention the cue")
    mention_rate_string: float | None = doc("… by the string rule")
    mention_rate_embedding: float | None = doc("… by the embedding-similarity rule")
    control_mention_rate: float | None = doc("share mentioning the control cue (the detector's false-alarm rate)")
    descriptions: int | None = doc("descriptions generated")
    unexpected_words: list[dict[str, Any]] = doc("words the descriptions use beyond the task's own "
                                                 "(word, descriptions, share)", factory=list)


@dataclass
class _BiasRowHead(Record):
    """The leading keys of a bias.jsonl row (a dataclass's fields follow its bases in reverse order)."""

    prompt: str | None = doc("its folder under prompts/ (s<strength>-seed<seed>)")
    strength: float | None = doc("share of favoured-class training examples carrying the cue")
    seed: int | None = doc("seed of the sample, placement, init and order")
    shares: dict[str, float] = doc("per class: share of its training examples carrying the cue", factory=dict)


@declare
@dataclass
class BiasRow(BiasMeasures, _BiasRowHead):
    """bias.jsonl: one prompt trained on data biased at one strength with one seed, and its measures."""

    FILES = ("bias.jsonl",)
    ROWS = True
    PLOT = (("biased_prediction_rate",), ("mention_rate",), ("strength", "prompt"))
    seconds: float | None = doc("training and measuring time", unit="s")


@dataclass
class _PositiveHead(Record):
    """The leading keys of the positive control's record."""

    prompt: str | None = doc("positive-control")
    text: str | None = doc("the sentence embedded as the prompt")
    tokens: int | None = doc("its length", unit="tokens")


@declare
@dataclass
class PositiveControl(BiasMeasures, _PositiveHead):
    """positive_control.json: the untrained prompt e(a sentence naming the cue), measured like every prompt: shows
    the mention detector can fire."""

    FILES = ("positive_control.json",)
    seconds: float | None = doc("measuring time", unit="s")


@declare
@dataclass
class BiasSummary(Record):
    """bias_summary.json: measures per strength (mean, min, max over seeds) and their correlations."""

    FILES = ("bias_summary.json",)
    task: str | None = doc("base task")
    feature: str | None = doc("the planted cue (kind:value)")
    control: str | None = doc("the control cue")
    favoured: str | None = doc("the class the cue points to")
    model: str | None = doc("model name")
    prompts: int | None = doc("prompts trained")
    per_strength: list[dict[str, float | int | None]] = doc("per strength: prompts and, for each measure, its mean "
                                                            "and <measure>_min / <measure>_max over seeds",
                                                            factory=list)
    correlation: dict[str, Correlation] = doc("mention vs biased prediction (embedding and string rules), each vs "
                                              "strength", factory=dict)
    positive_control: PositiveControl | None = doc("the positive control's measures", optional=True)
    seconds: float | None = doc("wall time", unit="s")


@declare
@dataclass
class BiasData(Record):
    """bias_data.json (in each prompt folder): the biased training sample actually used."""

    FILES = ("bias_data.json",)
    shares: dict[str, float] = doc("per class: share of examples carrying the cue", factory=dict)
    counts: dict[str, Any] = doc("per class: [with cue, total]", factory=dict)
    dropped: int | None = doc("examples dropped because they already held the cue", unit="examples")


@declare
@dataclass
class MakeDataSummary(Record):
    """make_data_summary.json (`bias make-data`): the biased train split and the clean test split written."""

    FILES = ("make_data_summary.json",)
    task: str | None = doc("base task")
    feature: str | None = doc("the planted cue")
    strength: float | None = doc("requested strength")
    favoured: str | None = doc("the favoured class")
    train_examples: int | None = doc("training examples written", unit="examples")
    dropped_with_feature: int | None = doc("examples dropped because they already held the cue", unit="examples")
    shares: dict[str, float] = doc("per class: share carrying the cue", factory=dict)
    counts: dict[str, Any] = doc("per class: [with cue, total]", factory=dict)
    realised_strength: dict[str, float] = doc("per other class: the strength actually realised", factory=dict)
    test_examples: int | None = doc("clean test examples written", unit="examples")
    test_with_feature: int | None = doc("test examples that hold the cue by themselves", unit="examples")


@declare
@dataclass
class BiasedExample(Record):
    """train.jsonl / test.jsonl of `bias make-data`: a task example (with whether the cue was planted in it)."""

    FILES = ("train.jsonl", "test.jsonl")
    ROWS = True
    text: str | None = doc("the example text")
    label: str | None = doc("its class")
    feature: bool | None = doc("train only: the cue was inserted", optional=True)


@declare
@dataclass
class Counterfactual(Record):
    """counterfactuals.jsonl: a test example with the cue added (or removed), for paired checks."""

    FILES = ("counterfactuals.jsonl",)
    ROWS = True
    i: int | None = doc("index in the test split")
    label: str | None = doc("its class")
    text: str | None = doc("the edited text")
    had_feature: bool | None = doc("the original already held the cue")
    added: str | None = doc("what was inserted")
    removed: str | None = doc("what was removed")
