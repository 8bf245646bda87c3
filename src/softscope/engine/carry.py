"""What a prompt remembers: the settings it was trained with, and how a reading command scores it again.

Training writes `settings` into every prompt file (and config.json): the task source (resolved path, hub:ID or
built-in name), template, columns, label words, classes, verbalizer, max length, placement (after_bos /
before_bos), model (alias and real path), seed, subsets and the test subset of the final accuracy. Reading
commands (`eval`, `interpret`, `describe`, `explain`, `project`, `report`) start from those settings; an option
the user passes overrides one and is listed in `overrides` (printed and recorded). A change of meaning — other
classes, other label words or another template — is refused unless `--allow-other-task` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SoftscopeError
from .models import PACKAGED, cache_dir
from .scoring import Scorer
from .tasks import _builtin_name, load_task

# settings a reading command may override, in the order they are printed
OVERRIDABLE = ("task", "data_dir", "text_column", "text_b_column", "label_column", "template", "label_words",
               "verbalizer", "max_length", "placement", "max_train", "max_test", "seed")
# settings that belong to one task: another --task drops the recorded ones
TASK_BOUND = ("data_dir", "text_column", "text_b_column", "label_column", "template", "label_words")
ALLOW_FLAG = "--allow-other-task"


def task_origin(spec: str) -> str:
    """The task as another folder can find it again: a resolved path, hub:ID, or a built-in's name."""
    spec = str(spec).strip()
    if spec.startswith("hub:"):
        return spec
    b = _builtin_name(spec)
    if b and not Path(spec).suffix:
        return b
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec


def model_path(adapter_or_name: Any) -> str:
    """The real base model (folder or hub id) behind a name or adapter: what `from_pretrained` needs."""
    name = getattr(adapter_or_name, "name", adapter_or_name)
    source = getattr(adapter_or_name, "source", "") or ""
    if name in PACKAGED:
        return str(cache_dir() / "models" / name)
    if source.startswith("hub:"):
        return source[4:]
    if source and Path(source).exists():
        return source
    p = Path(str(name)).expanduser()
    return str(p.resolve()) if p.exists() else str(name)


def record(task, adapter, scorer, *, task_spec: str, data_dir: str | None, seed: int, max_train: int | None,
           max_test: int | None, test_examples: int | None) -> dict:
    """The settings a trained prompt carries (see the module docstring)."""
    return {
        "task": task_origin(task_spec) if task_spec else None,  # None: a task built in code
        "task_name": task.name,
        "data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
        "text_column": task.text_column, "text_b_column": task.text_b_column, "label_column": task.label_column,
        "template": task.template,
        "label_words": list(task.label_words),
        "classes": list(task.classes),
        "verbalizer": scorer.verbalizer,
        "max_length": scorer.max_length,
        "placement": scorer.placement,
        "model": adapter.name,
        "model_path": model_path(adapter),
        "seed": seed, "max_train": max_train, "max_test": max_test,
        "test_examples": test_examples,  # the final accuracy's seeded test subset (None: the whole test set)
    }


def recorded(prompt) -> dict:
    """A prompt's settings; prompts saved before settings existed give what their metadata has."""
    s = dict(getattr(prompt, "settings", None) or {})
    if not s:
        if prompt.task and _builtin_name(prompt.task):
            s["task"] = _builtin_name(prompt.task)
        for k in ("template", "label_words", "classes"):
            if getattr(prompt, k):
                s[k] = list(getattr(prompt, k)) if isinstance(getattr(prompt, k), list) else getattr(prompt, k)
        if prompt.model:
            s["model"] = prompt.model
    return s


def _same(key: str, a: Any, b: Any) -> bool:
    if key == "task" and a is not None and b is not None:
        return task_origin(a) == task_origin(b)
    if key == "label_words" and a is not None and b is not None:
        return [str(x).strip() for x in a] == [str(x).strip() for x in b]
    return a == b


@dataclass
class Reading:
    """The task and scoring settings a reading command uses for one prompt, with what the user overrode."""

    task: Any
    settings: dict
    recorded: dict
    overrides: list[dict] = field(default_factory=list)
    test_total: int = 0  # test examples before the recorded subset

    def scorer(self, adapter, **kw):
        return Scorer(adapter, self.task, max_length=self.settings.get("max_length") or 80,
                      verbalizer=self.settings.get("verbalizer") or "auto",
                      placement=self.settings.get("placement") or "after_bos", **kw)

    def notes(self) -> list[str]:
        """Lines that say what differs from the prompt's own settings (empty when nothing does)."""
        return [f"override: {o['field']} = {o['used']!r} (the prompt's: {o['recorded']!r})" for o in self.overrides]

    def to_dict(self) -> dict:
        return {"settings": self.settings, "overrides": self.overrides}


def model_for(prompt, given: str | None) -> tuple[str | None, list[dict]]:
    """The model to load (the prompt's unless --model names another) and the override entry if any."""
    rec = recorded(prompt)
    own = rec.get("model") or None
    if own and not Path(own).exists() and rec.get("model_path") and Path(rec["model_path"]).exists():
        own = own if own in PACKAGED else rec["model_path"]
    if given and own and given != own and given != rec.get("model_path"):
        return given, [{"field": "model", "recorded": own, "used": given}]
    return given or own, []


def resolve(prompt, given: dict, allow_other_task: bool = False, what: str = "this prompt") -> Reading:
    """The task and settings to score `prompt` with: its own, overridden by the non-None entries of `given`."""
    rec = recorded(prompt)
    used = {k: rec.get(k) for k in OVERRIDABLE}
    overrides = []
    other_task = given.get("task") is not None and not _same("task", rec.get("task"), given["task"])
    if other_task:
        for k in TASK_BOUND:
            used[k] = None
    for k in OVERRIDABLE:
        v = given.get(k)
        if v is None:
            continue
        if k == "task":
            v = task_origin(v)
        if not _same(k, rec.get(k), v):
            overrides.append({"field": k, "recorded": rec.get(k), "used": v})
        used[k] = v
    if not used.get("task"):
        raise SoftscopeError(f"{what} records no task: pass --task (a built-in name, a data file or folder, or hub:ID)")
    task = load_task(used["task"], data_dir=used.get("data_dir"), text_column=used.get("text_column"),
                     label_column=used.get("label_column"), text_b_column=used.get("text_b_column"),
                     label_words=used.get("label_words"), template=used.get("template"),
                     max_train=used.get("max_train"), max_test=used.get("max_test"), seed=used.get("seed") or 0)
    changed = []
    if rec.get("classes") and list(rec["classes"]) != list(task.classes):
        changed.append(f"classes {', '.join(task.classes)} instead of its {', '.join(rec['classes'])}")
    elif rec.get("label_words") and not _same("label_words", rec["label_words"], task.label_words):
        changed.append(f"label words {', '.join(task.label_words)} instead of its {', '.join(rec['label_words'])}")
    if rec.get("template") and rec["template"] != task.template:
        changed.append(f"template {task.template!r} instead of its {rec['template']!r}")
    if changed and not allow_other_task:
        raise SoftscopeError(f"{what} was trained on {rec.get('task_name') or rec.get('task') or 'another task'}; "
                             f"scoring it with {' and '.join(changed)} changes what it means: drop the overriding "
                             f"option or pass {ALLOW_FLAG} to score it anyway")
    if changed:
        overrides.append({"field": "meaning", "recorded": rec.get("task"), "used": "; ".join(changed)})
    total = len(task.test)
    n = rec.get("test_examples")
    if given.get("max_test") is None and n and not other_task:  # the subset the recorded accuracy was measured on
        task.test = task.subset("test", n, used.get("seed") or 0)
    settings = {**{k: used.get(k) for k in OVERRIDABLE}, "task_name": task.name, "template": task.template,
                "label_words": list(task.label_words), "classes": list(task.classes),
                "text_column": task.text_column, "text_b_column": task.text_b_column,
                "label_column": task.label_column, "test_examples": len(task.test), "test_total": total}
    return Reading(task=task, settings=settings, recorded=rec, overrides=overrides, test_total=total)


def of(n: int, total: int) -> str:
    """'all 277' or '100 of 277': which test set a figure was measured on."""
    return f"all {total}" if n >= total else f"{n} of {total}"
