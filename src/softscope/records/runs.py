"""What every run folder holds: its record (run.json), its config (config.json), prompt sidecars, training rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import CI, Record, declare, doc



@declare
@dataclass
class RunRecord(Record):
    """run.json: the folder's kind and the settings fingerprint that decides reuse and resume."""

    FILES = ("run.json",)
    kind: str | None = doc("the run kind (train, describe, wayward, ...): which command may reuse the folder")
    command: str | None = doc("the command that made the folder")
    settings: dict[str, Any] | None = doc("the settings fingerprint; a resumed run must match it (growable keys aside)")


@declare
@dataclass
class RunConfig(Record):
    """config.json: the command, its whole config (schemas in formats.md), versions and machine, and what the
    method recorded beside it (task, model facts, compute, layer pairs...) under its own keys."""

    FILES = ("config.json",)
    EXTRA = "context"
    command: str | None = doc("the command line that made the run")
    config: dict[str, Any] | None = doc("the method's config dataclass, every field (see formats.md)")
    versions: dict[str, str | None] | None = doc("python, softscope, torch, transformers, peft, safetensors versions")
    machine: dict[str, Any] | None = doc("CPU capability torch dispatches to and whether the CPU has native bf16")
    kind: str | None = doc("the run kind, as in run.json")
    context: dict[str, Any] = doc("what the method recorded beside its config (task, model_info, compute, pairs, "
                                  "references, target prompts, ...), written flat", factory=dict)

    def _part(self, key: str) -> dict:
        v = self.context.get(key)
        return v if isinstance(v, dict) else {}

    def names(self, summary_task: str | None = None, summary_model: str | None = None) -> tuple[str | None, str | None]:
        """(task, model) of the run: what the method recorded, else the summary's, else the config's."""
        c = self.config or {}
        task = self._part("task").get("name") or summary_task or c.get("task")
        model = self._part("model_info").get("name") or self.context.get("model") or summary_model or c.get("model")
        return (task if isinstance(task, str) else None), (model if isinstance(model, str) else None)

    def facts(self) -> dict[str, Any]:
        """What a page shows of the run: command, model, task, classes, template, layers, width, seed (None: unknown)."""
        task, info = self._part("task"), self._part("model_info")
        return {"command": self.command, "model": info.get("name") or (self.config or {}).get("model"),
                "task": task.get("name") or (self.config or {}).get("task"),
                "classes": ", ".join(task.get("classes", [])) or None, "template": task.get("template"),
                "layers": info.get("layers"), "width": info.get("width"), "seed": (self.config or {}).get("seed")}

    @property
    def prompt_settings(self) -> dict[str, Any]:
        """What the run's prompt remembers for scoring it again (engine.carry), when it recorded it."""
        return self._part("settings")


@declare
@dataclass
class PromptMeta(Record):
    """The .json sidecar (and safetensors header) of a prompt file: what it was trained with and how it did."""

    FILES = ("prompt.json", "prompt_continuous.json", "hard_prompt.json")
    model: str = doc("the model it was trained on (alias, folder or Hub id)", "")
    task: str = doc("the task name", "")
    template: str = doc("the input template with {text}", "")
    label_words: list[str] = doc("the verbalizer's words, one per class", factory=list)
    classes: list[str] = doc("the class names, in label order", factory=list)
    step: int = doc("the training step it was saved at", 0, unit="steps")
    accuracy: float | None = doc("its accuracy when saved (checkpoint eval or final eval); null when not scored")
    extra: dict[str, Any] = doc("method facts (seed, init, run, eval_examples, final_eval; a discrete prompt's "
                                "method, ids, text, fluency weight; a wayward prompt's target and γ)", factory=dict)
    settings: dict[str, Any] = doc("what scoring it again needs: task source, columns, template, label words, "
                                   "verbalizer, placement", factory=dict)
    n_tokens: int | None = doc("virtual tokens n (the tensor is [n, d])", unit="tokens")
    width: int | None = doc("embedding width d")
    init_file: str | None = doc("init/<digest>.safetensors: the embedding it started from", optional=True)


@declare
@dataclass
class MetricsRow(Record):
    """metrics.jsonl: one row per logged training step (event train) or held-out evaluation (event eval)."""

    FILES = ("metrics.jsonl",)
    ROWS = True
    EXTRA = "values"
    step: int = doc("optimizer steps done", 0, unit="steps")
    event: str = doc("train (a logged step) or eval (a checkpoint's evaluation)", "")
    eval_accuracy: float | None = doc("checkpoint accuracy on the eval subset (eval rows)", optional=True)
    eval_examples: int | None = doc("examples in that eval subset", optional=True, unit="examples")
    loss: float | None = doc("training loss of the step (task loss plus weighted terms)", optional=True)
    lr: float | None = doc("learning rate used at the step", optional=True)
    values: dict[str, Any] = doc("other quantities logged by name: a loss term's value (fluency, distance), "
                                 "RLPrompt's reward statistics, a discrete prompt's ids/text/held-out accuracy",
                                 factory=dict)


@dataclass
class CheckpointRow(Record):
    """One checkpoint of a training run: its step, accuracy on the eval subset and where its prompt is."""

    step: int = doc("the checkpoint's step", 0, unit="steps")
    accuracy: float | None = doc("accuracy on the eval subset")
    examples: int | None = doc("eval subset size", unit="examples")
    ci95: list[float] | None = doc(f"Wilson {CI} of the accuracy")
    path: str | None = doc("the prompt file, relative to the run folder")


@dataclass
class Truncated(Record):
    """Inputs cut to fit the max length."""

    train: int | None = doc("training inputs cut", unit="examples")
    test: int | None = doc("test inputs cut", unit="examples")
    max_length: int | None = doc("the max length", unit="tokens")


@declare
@dataclass
class TrainSummary(Record):
    """train_summary.json: the final accuracy with its interval and every checkpoint."""

    FILES = ("train_summary.json",)
    task: str | None = doc("task name")
    model: str | None = doc("model name")
    tokens: int | None = doc("virtual tokens n", unit="tokens")
    steps: int | None = doc("training steps", unit="steps")
    final_accuracy: float | None = doc("accuracy of the final prompt on the final eval set (null with final_eval none)")
    final_eval: str | None = doc("which set the final eval used: full test set, the eval subset or none")
    final_eval_examples: int | None = doc("examples in the final eval", unit="examples")
    test_examples_total: int | None = doc("the test split's size", unit="examples")
    final_ci95: list[float] | None = doc(f"Wilson {CI} of final_accuracy")
    truncated: Truncated | None = doc("inputs cut to max_length")
    checkpoints: list[CheckpointRow] = doc("every checkpoint in step order", factory=list)
    seconds: float | None = doc("wall time of the training call", unit="s")


@declare
@dataclass
class EvalRow(Record):
    """eval.jsonl: one scored test example."""

    FILES = ("eval.jsonl",)
    ROWS = True
    i: int = doc("index in the test set", 0)
    text: str | None = doc("the input text")
    text_b: str | None = doc("the second text of a pair task (null otherwise)")
    gold: str | None = doc("the gold class")
    pred: str | None = doc("the predicted class")
    logprobs: list[float] = doc("log-probability of each class's label word, in class order", factory=list)


@declare
@dataclass
class EvalSummary(Record):
    """eval_summary.json: a saved prompt scored on its task's test set, with the settings that read it."""

    FILES = ("eval_summary.json",)
    prompt: str | None = doc("the prompt file, run folder or PEFT adapter scored")
    task: str | None = doc("task name")
    model: str | None = doc("model name")
    accuracy: float | None = doc("test accuracy")
    examples: int | None = doc("test examples scored", unit="examples")
    test_total: int | None = doc("the test split's size", unit="examples")
    ci95: list[float] | None = doc(f"Wilson {CI} of the accuracy")
    interval: str | None = doc("the interval method (wilson)")
    recorded_accuracy: float | None = doc("the accuracy recorded in the prompt file at training")
    per_class_recall: dict[str, float | None] = doc("recall of each class (null for a class absent from the set)",
                                                    factory=dict)
    truncated: int | None = doc("inputs cut to fit max length", unit="examples")
    settings: dict[str, Any] | None = doc("the reading settings used (task source, columns, template, verbalizer)")
    overrides: list[str] = doc("settings given on the command line that differ from the prompt's own", factory=list)
