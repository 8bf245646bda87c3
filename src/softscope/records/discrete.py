"""Discrete readings: PEZ and RLPrompt runs and their weight sweeps, interpret, explain and the trade-off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import CI, Record, declare, doc



@dataclass
class CurvePoint(Record):
    """One held-out evaluation during a discrete-prompt run."""

    step: int | None = doc("training step", unit="steps")
    heldout_accuracy: float | None = doc("accuracy on the held-out selection set")
    text: str | None = doc("RLPrompt: the greedy prompt at that step", optional=True)


@dataclass
class RewardPoint(Record):
    """RLPrompt's reward at one training step."""

    step: int | None = doc("training step", unit="steps")
    reward_task: float | None = doc("mean task reward of the sampled prompts")
    reward_raw: float | None = doc("mean reward before the fluency term")


@declare
@dataclass
class DiscreteRun(Record):
    """pez_summary.json / rlprompt_summary.json of one fluency weight (and each row of pez.jsonl / rlprompt.jsonl):
    the discrete prompt selected on held-out accuracy, its test accuracy and perplexity."""

    FILES = ("pez_summary.json", "rlprompt_summary.json", "pez.jsonl", "rlprompt.jsonl")
    ROWS = True  # as pez.jsonl / rlprompt.jsonl rows; the *_summary.json of one weight is one such object
    KEYS = ("method",)
    PLOT = (("perplexity",), ("test_accuracy",), ("fluency_weight", "text"))
    method: str | None = doc("pez or rlprompt")
    task: str | None = doc("task name")
    model: str | None = doc("task model name")
    policy: str | None = doc("RLPrompt: the policy model", optional=True)
    fluency_weight: float | None = doc("weight of the fluency term (LM log-likelihood of the prompt)")
    fluent: bool | None = doc("RLPrompt: fluent sampling (top-k from the LM)", optional=True)
    tokens: int | None = doc("prompt length", unit="tokens")
    steps: int | None = doc("training steps", unit="steps")
    ids: list[int] = doc("the selected prompt's token ids", factory=list)
    text: str | None = doc("the selected prompt as text")
    selected_step: int | None = doc("the step whose prompt was selected (best held-out accuracy)", unit="steps")
    heldout: str | None = doc("the held-out selection set (train-holdout or dev)")
    heldout_accuracy: float | None = doc("its accuracy on that set")
    test_accuracy: float | None = doc("its test accuracy (null with no test examples)")
    test_examples: int | None = doc("test examples", unit="examples")
    perplexity: float | None = doc("the prompt's perplexity under the task model")
    seconds: float | None = doc("wall time", unit="s")
    curve: list[CurvePoint] = doc("held-out accuracy at each evaluation", factory=list)
    reward_curve: list[RewardPoint] | None = doc("RLPrompt summary only: reward per step", optional=True)


@dataclass
class SweepEntry(Record):
    """One weight of a sweep summary."""

    PLOT = (("perplexity",), ("test_accuracy",), ("fluency_weight", "text"))
    fluency_weight: float | None = doc("fluency weight")
    text: str | None = doc("selected prompt")
    test_accuracy: float | None = doc("its test accuracy")
    perplexity: float | None = doc("its perplexity")
    selected_step: int | None = doc("selected step", unit="steps")
    test_examples: int | None = doc("test examples", unit="examples")
    test_ci95: list[float] | None = doc(f"Wilson {CI} of test_accuracy")


@declare
@dataclass
class WeightSweepSummary(Record):
    """pez_summary.json / rlprompt_summary.json of a sweep folder: one entry per fluency weight (w-<weight>/)."""

    FILES = ("pez_summary.json", "rlprompt_summary.json")
    KEYS = ("runs",)
    ITEMS = "runs"
    task: str | None = doc("task name")
    model: str | None = doc("model name")
    runs: list[SweepEntry] = doc("per weight, in the order given", factory=list)


@dataclass
class Faithfulness(Record):
    """Does the reading make the model predict what the soft prompt does, on the same examples?"""

    ALIASES = {"accuracy": "reading_accuracy"}
    agreement: float | None = doc("share of examples where both predict the same class")
    prompt_accuracy: float | None = doc("the soft prompt's accuracy")
    reading_accuracy: float | None = doc("the reading's accuracy")
    accuracy_gap: float | None = doc("prompt_accuracy − reading_accuracy")
    kl: float | None = doc("mean KL(soft prompt ‖ reading) of the class distributions", unit="nats")
    examples: int | None = doc("examples", unit="examples")
    agreement_ci95: list[float] | None = doc(f"Wilson {CI} of agreement")
    prompt_accuracy_ci95: list[float] | None = doc(f"Wilson {CI}")
    reading_accuracy_ci95: list[float] | None = doc(f"Wilson {CI}", optional=True)
    paired: dict[str, Any] | None = doc("McNemar exact test of the two accuracies on the same examples",
                                        optional=True)


@dataclass
class Scrutability(Record):
    """Can a person read the reading?"""

    perplexity: float | None = doc("perplexity of the reading under the model")
    dictionary_share: float | None = doc("share of its words in the dictionary")
    non_dictionary_words: list[str] = doc("the words that are not", factory=list)


@dataclass
class Thresholds(Record):
    """The bars a reading must clear to count as faithful and scrutable."""

    min_agreement: float | None = doc("faithful: agreement at least this")
    max_perplexity: float | None = doc("scrutable: perplexity at most this")
    min_dictionary_share: float | None = doc("scrutable: dictionary share at least this")


@declare
@dataclass
class InterpretRecord(Record):
    """interpret_summary.json (and its one interpret.jsonl row): a discrete reading of a soft prompt, measured."""

    FILES = ("interpret_summary.json", "interpret.jsonl")
    PLOT = (("perplexity",), ("agreement",), ("reading", "text"))
    prompt: str | None = doc("the soft prompt read")
    model: str | None = doc("model name")
    task: str | None = doc("task name")
    reading: str | None = doc("how it was read: projection, pez, text or ids")
    text: str | None = doc("the reading")
    ids: list[int] = doc("its token ids", factory=list)
    tokens: int | None = doc("its length", unit="tokens")
    truncated: int | None = doc("inputs cut to max_length", unit="examples")
    max_length: int | None = doc("max input length", unit="tokens")
    text_roundtrip: bool | None = doc("the text re-tokenises to the same ids")
    faithfulness: Faithfulness | None = doc("faithfulness measures")
    scrutability: Scrutability | None = doc("scrutability measures")
    thresholds: Thresholds | None = doc("the bars used")
    faithful: bool | None = doc("agreement clears its bar")
    scrutable: bool | None = doc("perplexity and dictionary share clear theirs")
    interpretable: bool | None = doc("faithful and scrutable")
    overrides: list[str] = doc("reading settings that differ from the prompt's own", factory=list)


@declare
@dataclass
class ExplainReading(Record):
    """readings.jsonl (explain): one reading of the soft prompt with its measures."""

    FILES = ("readings.jsonl",)
    ROWS = True
    name: str | None = doc("its label (projection (cos), PEZ (N steps), InSPEcT ...)")
    method: str | None = doc("projection, pez or describe")
    text: str | None = doc("the reading")
    ids: list[int] = doc("its token ids", factory=list)
    source: str | None = doc("where a sub-run wrote it", optional=True)
    skipped: str | None = doc("why this reading could not be made (then no measures)", optional=True)
    details: Any = doc("method details: per-position top tokens (projection), the selection curve (PEZ), the best "
                       "description (InSPEcT)", optional=True)
    faithfulness: Faithfulness | None = doc("faithfulness measures", optional=True)
    scrutability: Scrutability | None = doc("scrutability measures", optional=True)
    faithful: bool | None = doc("faithful", optional=True)
    scrutable: bool | None = doc("scrutable", optional=True)
    interpretable: bool | None = doc("faithful and scrutable", optional=True)
    text_roundtrip: bool | None = doc("the text re-tokenises to the same ids", optional=True)
    seconds: float | None = doc("time to read and measure", unit="s", optional=True)


@dataclass
class SoftPromptFacts(Record):
    """The soft prompt an explain run read."""

    n_tokens: int | None = doc("virtual tokens", unit="tokens")
    step: int | None = doc("its training step", unit="steps")
    accuracy: float | None = doc("its accuracy on the explain examples")
    recorded_accuracy: float | None = doc("the accuracy recorded in the prompt file")


@declare
@dataclass
class ExplainSummary(Record):
    """explain_summary.json: one prompt read three ways, each measured on the same examples."""

    FILES = ("explain_summary.json",)
    prompt: str | None = doc("the prompt read")
    model: str | None = doc("model name")
    task: str | None = doc("task name")
    examples: int | None = doc("examples the readings were measured on", unit="examples")
    truncated: int | None = doc("inputs cut to max_length", unit="examples")
    max_length: int | None = doc("max input length", unit="tokens")
    overrides: list[str] = doc("reading settings that differ from the prompt's own", factory=list)
    soft_prompt: SoftPromptFacts | None = doc("the soft prompt read")
    readings: list[ExplainReading] = doc("every reading", factory=list)
    measures: str | None = doc("what the measures mean, in a line")
    seconds: float | None = doc("wall time", unit="s")


@declare
@dataclass
class TradeoffRow(Record):
    """tradeoff.jsonl: one prompt (the soft prompt, a projection, a PEZ or RLPrompt weight) on the same examples."""

    FILES = ("tradeoff.jsonl",)
    ROWS = True
    PLOT = (("perplexity",), ("accuracy",), ("method", "weight"))
    method: str | None = doc("soft prompt, projection (cos|l2), PEZ or RLPrompt")
    weight: float | None = doc("fluency weight (null for the others)")
    text: str | None = doc("the discrete prompt (null for the soft prompt)")
    ids: list[int] | None = doc("its ids")
    accuracy: float | None = doc("accuracy on the shared examples")
    perplexity: float | None = doc("perplexity under the task model")
    dictionary_share: float | None = doc("share of dictionary words")
    agreement: float | None = doc("agreement with the soft prompt's predictions")
    kl: float | None = doc("KL from the soft prompt's class distribution", unit="nats")
    accuracy_gap: float | None = doc("soft prompt accuracy − this accuracy")
    faithful: bool | None = doc("faithful", optional=True)
    scrutable: bool | None = doc("scrutable", optional=True)
    interpretable: bool | None = doc("faithful and scrutable", optional=True)
    odd: list[str] | None = doc("why a low-perplexity prompt still reads oddly (repeated token, function words)",
                                optional=True)
    selected_step: int | None = doc("PEZ/RLPrompt: the selected step", optional=True, unit="steps")


@declare
@dataclass
class TradeoffSummary(Record):
    """tradeoff_summary.json: accuracy against readability for every prompt, and the odd low-perplexity ones."""

    FILES = ("tradeoff_summary.json",)
    ITEMS = "rows"
    task: str | None = doc("task name")
    model: str | None = doc("model name")
    examples: int | None = doc("shared examples", unit="examples")
    soft_accuracy: float | None = doc("the soft prompt's accuracy on them")
    rows: list[dict[str, Any]] = doc("per prompt: method, weight, text, accuracy, perplexity, dictionary_share, "
                                     "agreement, kl, interpretable, odd", factory=list)
    max_perplexity: float | None = doc("the scrutability bar on perplexity")
    odd_prompts_by_perplexity: list[dict[str, Any]] = doc("odd-reading prompts, lowest perplexity first, with "
                                                          "whether they pass the bar", factory=list)


@declare
@dataclass
class ScoresCache(Record):
    """scores_cache.json (tradeoff): finished scores, so a resumed or extended sweep does not redo them."""

    FILES = ("scores_cache.json",)
    examples: int | None = doc("shared examples", unit="examples")
    soft_step: int | None = doc("the soft prompt's step", unit="steps")
    rows: dict[str, Any] = doc("scored rows keyed by method|weight|ids", factory=dict)
    soft_logprobs: list[list[float]] = doc("the soft prompt's class log-probabilities per example", factory=list)
