"""Planted features (step 1): a word, phrase or punctuation mark inserted at a seeded clause boundary or at the end;
biased train splits at an exact co-occurrence strength, counterfactual copies, and `bias make-data`."""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from ...engine.config import SEED, DataOptions, option, validate
from ...engine.errors import SoftscopeError
from ...engine.metrics import STOP_WORDS
from ...engine.runs import Run, register_kind
from ...engine.tasks import Example, Task, load_task

DATA_KIND = register_kind("bias-data", legacy_command="bias make-data")

FEATURE_KINDS = ("word", "phrase", "punct")
# neutral control features of each kind: inserted like the planted one, never trained on
CONTROLS = {"word": "word:Johnson", "phrase": 'phrase:"as noted earlier"', "punct": "punct:--"}
# names of punctuation marks: a description that says "exclamation marks" names `punct:!!`
PUNCT_NAMES = {"!": ["exclamation"], "?": ["question mark"], ".": ["period", "full stop", "dots", "ellipsis"],
               ",": ["comma"], ";": ["semicolon"], ":": ["colon"], "-": ["dash", "hyphen"], "*": ["asterisk"],
               "#": ["hashtag", "hash sign"], "~": ["tilde"], "$": ["dollar sign"], "@": ["at sign"]}
CLAUSE_BREAKS = {",", ";", ":", "--", "-"}
INSERT_WINDOW = 30  # words: insert early enough that truncation to max_length never cuts the feature


# ---- features -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    """An irrelevant surface feature: a word/name or phrase inserted at a clause boundary, or punctuation at the end."""

    kind: str
    value: str

    @classmethod
    def parse(cls, spec: str) -> "Feature":
        kind, sep, value = spec.partition(":")
        kind, value = kind.strip().lower(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].strip()
        if not sep or kind not in FEATURE_KINDS or not value:
            raise SoftscopeError(f"--feature {spec!r}: use word:NAME, phrase:\"some words\" or punct:MARKS "
                                 "(e.g. word:Spielberg, phrase:\"as seen on TV\", punct:!!)")
        if kind == "word" and len(value.split()) != 1:
            raise SoftscopeError(f"--feature {spec!r}: a word feature is one word; use phrase:\"...\" for several")
        if kind == "punct" and any(ch.isalnum() or ch.isspace() for ch in value):
            raise SoftscopeError(f"--feature {spec!r}: punct takes punctuation marks only, like !! or ?!")
        return cls(kind, value)

    @property
    def spec(self) -> str:
        return f'{self.kind}:"{self.value}"' if " " in self.value else f"{self.kind}:{self.value}"

    def _pattern(self) -> re.Pattern:
        if self.kind == "punct":
            return re.compile(re.escape(self.value))
        return re.compile(r"(?<![\w])" + re.escape(self.value) + r"(?![\w])", re.IGNORECASE)

    def present(self, text: str) -> bool:
        """Whether text already contains the feature (case-insensitive for words and phrases)."""
        return bool(self._pattern().search(text))

    def add(self, text: str, seed: int = 0) -> str:
        """text with the feature: punctuation at the end; a word/phrase at a seeded clause boundary early on."""
        if self.kind == "punct":
            return text.rstrip() + " " + self.value
        words = text.split(" ")
        slots = [0] + [i + 1 for i, w in enumerate(words[:INSERT_WINDOW]) if w in CLAUSE_BREAKS and i + 1 < len(words)]
        key = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
        at = slots[key[0] % len(slots)]
        return " ".join(words[:at] + [self.value] + words[at:])

    def remove(self, text: str) -> str:
        """text with every occurrence of the feature (and the one space that joined it) taken out."""
        if self.kind == "punct":
            return re.sub(r" ?" + re.escape(self.value), "", text)
        v = r"(?<![\w])" + re.escape(self.value) + r"(?![\w])"
        out = re.sub(v + " ", "", text, flags=re.IGNORECASE)  # "Spielberg a ..." / "a , Spielberg b"
        return re.sub(" ?" + v, "", out, flags=re.IGNORECASE)  # at the end, or glued to punctuation

    def mention_terms(self) -> list[str]:
        """Strings whose presence in a description names the feature (the feature and its close paraphrases)."""
        terms = [self.value]
        if self.kind == "phrase":
            words = self.value.split()
            while words and words[0].lower() in STOP_WORDS:
                words = words[1:]
            if words and " ".join(words) != self.value:
                terms.append(" ".join(words))
        if self.kind == "punct":
            for ch in dict.fromkeys(self.value):
                terms += PUNCT_NAMES.get(ch, [])
        return terms


def control_for(feature: Feature, spec: str | None = None) -> Feature:
    """The neutral control feature: `spec` if given, else a default of the same kind that differs from the feature."""
    ctrl = Feature.parse(spec or CONTROLS[feature.kind])
    if ctrl.value.lower() == feature.value.lower():
        raise SoftscopeError(f"the control feature equals the feature ({feature.spec}): pass another --control")
    return ctrl


# ---- biased training data, counterfactuals ------------------------------------------------------------------
@dataclass
class BiasedData:
    """A biased train split, which examples carry the feature, and the realised shares per class."""

    train: list[Example]
    has_feature: list[bool]
    shares: dict[str, float]  # class -> share of its examples with the feature
    counts: dict[str, list[int]]  # class -> [with feature, total]
    dropped: int  # examples that already contained the feature (left out so the shares are exact)


def target_share(strength: float, favoured: bool) -> float:
    """Share of a class's examples that carry the feature: (1 + S)/2 for the favoured class, (1 − S)/2 otherwise."""
    return (1 + strength) / 2 if favoured else (1 - strength) / 2


def make_biased(examples: Sequence[Example], classes: Sequence[str], feature: Feature, strength: float,
                favoured: str, seed: int = 0) -> BiasedData:
    """Plant the feature in exactly round(share × n_c) examples of each class c, chosen by a seeded permutation.

    The permutation depends on (seed, class) only, so the feature sets for growing strengths are nested and every
    strength trains on the same texts: only the feature's placement changes.
    """
    if not 0.0 <= strength <= 1.0:
        raise SoftscopeError(f"--strength {strength}: use a value in [0, 1]")
    if favoured not in classes:
        raise SoftscopeError(f"--favoured {favoured!r}: use one of {', '.join(classes)}")
    clean = [e for e in examples if not feature.present(e.text)]
    dropped = len(examples) - len(clean)
    chosen: set[int] = set()
    counts = {}
    for c in classes:
        idx = [i for i, e in enumerate(clean) if e.label == c]
        random.Random(f"{seed}:{c}").shuffle(idx)
        k = int(math.floor(target_share(strength, c == favoured) * len(idx) + 0.5))
        chosen.update(idx[:k])
        counts[c] = [k, len(idx)]
    train = [Example(feature.add(e.text, seed) if i in chosen else e.text, e.label, e.text_b)
             for i, e in enumerate(clean)]
    shares = {c: (k / n if n else float("nan")) for c, (k, n) in counts.items()}
    return BiasedData(train, [i in chosen for i in range(len(clean))], shares, counts, dropped)


def biased_task(task: Task, data: BiasedData, feature: Feature, strength: float) -> Task:
    """The task with its train split replaced by the biased one (test/dev stay clean)."""
    return replace(task, train=data.train, name=task.name,
                   description=f"{task.description} [train biased: {feature.spec} at strength {strength:g}]")


def counterfactuals(examples: Sequence[Example], feature: Feature, seed: int = 0) -> list[dict]:
    """Per example: the text, a copy with the feature added and one with it removed (differing only by it)."""
    rows = []
    for i, e in enumerate(examples):
        had = feature.present(e.text)
        base = feature.remove(e.text) if had else e.text
        rows.append({"i": i, "label": e.label, "text": e.text, "had_feature": had,
                     "added": e.text if had else feature.add(base, seed), "removed": base})
    return rows


# ---- bias make-data --------------------------------------------------------------------------------------------
@dataclass
class MakeDataConfig(DataOptions):
    """Write a biased train split, the clean test split and its counterfactual copies."""

    feature: str = option("word:Spielberg", 'the planted feature: word:NAME, phrase:"some words" or punct:MARKS')
    strength: float = option(1.0, "co-occurrence strength S in [0, 1]: share (1+S)/2 of the favoured class, (1-S)/2 others",
                        ge=0, le=1)
    favoured: str | None = option(None, "class the feature co-occurs with (default: the first class)")
    max_train: int | None = option(None, "use at most this many training examples (seeded sample)", ge=2)
    seed: int = option(0, "seed of the choice of examples and of insertion positions", **SEED)

    def __post_init__(self) -> None:
        validate(self)
        Feature.parse(self.feature)


def load_base_task(task: str, data_dir: str | None) -> Task:
    """The clean task both commands start from (`sweep` calls it through this module: one place to point it)."""
    return load_task(task, data_dir=data_dir)


def _favoured(task: Task, favoured: str | None) -> str:
    if favoured is None:
        return task.classes[0]
    if favoured in task.classes:
        return favoured
    if favoured in task.label_words:
        return task.classes[task.label_words.index(favoured)]
    raise SoftscopeError(f"--favoured {favoured!r}: use one of {', '.join(task.classes)}")


def make_data(cfg: MakeDataConfig, out: str | Path, task: Task | None = None) -> dict:
    """Write train.jsonl (biased), test.jsonl (clean), counterfactuals.jsonl and make_data_summary.json to `out`."""
    feature = Feature.parse(cfg.feature)
    task = task or load_base_task(cfg.task, cfg.data_dir)
    fav = _favoured(task, cfg.favoured)
    base = task.subset("train", cfg.max_train, cfg.seed)
    data = make_biased(base, task.classes, feature, cfg.strength, fav, cfg.seed)
    with Run.open(out, DATA_KIND, command="bias make-data") as run:
        return _write_data(run, cfg, task, feature, fav, data)


def _write_data(run: Run, cfg: MakeDataConfig, task: Task, feature: Feature, fav: str, data) -> dict:
    run.write_config(cfg, task=task.to_dict(), favoured=fav)
    run.write_jsonl("train.jsonl", [{"text": e.text, "label": e.label, "feature": f}
                                    for e, f in zip(data.train, data.has_feature)])
    run.write_jsonl("test.jsonl", [{"text": e.text, "label": e.label} for e in task.test])
    run.write_jsonl("counterfactuals.jsonl", counterfactuals(task.test, feature, cfg.seed))
    realised = {c: data.shares[fav] - s for c, s in data.shares.items() if c != fav}
    summary = {"task": task.name, "feature": feature.spec, "strength": cfg.strength, "favoured": fav,
               "train_examples": len(data.train), "dropped_with_feature": data.dropped, "shares": data.shares,
               "counts": data.counts, "realised_strength": realised,
               "test_examples": len(task.test), "test_with_feature": sum(feature.present(e.text) for e in task.test)}
    run.write_json("make_data_summary.json", summary)
    return summary
