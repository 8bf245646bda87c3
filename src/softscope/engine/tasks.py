"""Classification tasks: built-in specs (SST-2/5, SUBJ, AG News, TREC), loaders and validation.

A task is examples + class names + verbalizer words + a template. Built-ins are read from a local data
folder (`<data>/<name>/{train,test,dev}.jsonl`) and fall back to the Hugging Face Hub; user tasks come from
one JSONL/JSON/CSV/TSV file (split 80/20, seeded), a folder with `train.*`/`test.*` files, or `hub:owner/name`.
The model sees `task.format(ex)` followed by " " + the label word (InSPEcT: "{text_field} : {x} Label :").
"""
# size: task loading: built-in specs, the JSONL/CSV/TSV/Hub readers and validation; the readers share the validation rules.

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import SoftscopeError
from .inputs import read_text_file

SPLITS = ("train", "test", "dev")
EXTENSIONS = (".jsonl", ".json", ".csv", ".tsv")
TEST_FRACTION = 0.2


@dataclass
class Example:
    text: str
    label: str  # class name
    text_b: str | None = None  # second sentence for sentence-pair tasks


@dataclass
class Task:
    """Everything a method needs about one classification task; `to_dict` is what goes into config.json."""

    name: str
    classes: list[str]
    label_words: list[str]
    template: str
    text_field: str
    references: list[str]
    train: list[Example]
    test: list[Example]
    dev: list[Example]
    source: str
    description: str = ""
    text_column: str | None = None  # the columns the examples were read from (None: a built-in's own)
    text_b_column: str | None = None
    label_column: str | None = None
    origin: str = ""  # the spec load_task was given (file, folder, hub:ID or built-in name); "" when built in code

    def format(self, ex: Example) -> str:
        """The text the model reads before " " + label word."""
        return self.template.format(text=ex.text, text_b=ex.text_b if ex.text_b is not None else "")

    def label_index(self, label: str) -> int:
        """Position of a class name (or of its label word) in `classes`."""
        if label in self.classes:
            return self.classes.index(label)
        if label in self.label_words:
            return self.label_words.index(label)
        raise SoftscopeError(f"unknown label {label!r} for task {self.name}: use one of {', '.join(self.classes)}")

    def split(self, split: str) -> list[Example]:
        if split not in SPLITS:
            raise SoftscopeError(f"unknown split {split!r}: use train, test or dev")
        return getattr(self, split)

    def subset(self, split: str, n: int | None, seed: int) -> list[Example]:
        """A seeded sample of n examples kept in their original order; samples for a larger n contain smaller ones."""
        rows = self.split(split)
        if n is not None and n < 1:
            raise SoftscopeError(f"subset size must be at least 1 (got {n})")
        if n is None or n >= len(rows):
            return list(rows)
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        return [rows[i] for i in sorted(order[:n])]

    def to_dict(self) -> dict:
        """Metadata only (no examples), for config.json and prompt metadata."""
        return {
            "name": self.name,
            "classes": list(self.classes),
            "label_words": list(self.label_words),
            "template": self.template,
            "text_field": self.text_field,
            "references": list(self.references),
            "source": self.source,
            "description": self.description,
            "text_column": self.text_column,
            "text_b_column": self.text_b_column,
            "label_column": self.label_column,
            "sizes": {s: len(getattr(self, s)) for s in SPLITS},
        }


# ---- built-in specs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task: fixed classes and field name, its Hub copy, and reference descriptions of our own."""

    name: str
    classes: tuple[str, ...]
    text_field: str
    description: str
    hub_id: str
    hub_text: str
    hub_label: str
    hub_names: dict[str, str]  # Hub label name (lower-case ClassLabel name or label_text) -> class
    hub_ints: tuple[str, ...]  # class of Hub integer label i, used when the Hub gives no names
    references: tuple[str, ...] = ()
    label_words: tuple[str, ...] | None = None

    @property
    def template(self) -> str:
        return f"{self.text_field} : {{text}} Label :"

    @property
    def words(self) -> list[str]:
        return list(self.label_words or self.classes)


BUILTIN: dict[str, TaskSpec] = {
    "sst2": TaskSpec(
        "sst2", ("negative", "positive"), "Sentence", "SST-2: binary sentiment of movie-review sentences",
        "stanfordnlp/sst2", "sentence", "label",
        {"negative": "negative", "positive": "positive"}, ("negative", "positive"),
        ("Classify the sentiment of the movie review as positive or negative.",
         "Is this review positive or negative?",
         "Decide whether the sentence expresses a positive or a negative opinion about a film.",
         "Sentiment analysis: label the sentence positive or negative.",
         "Tell whether the reviewer liked the movie or not: positive, negative.")),
    "sst5": TaskSpec(
        "sst5", ("terrible", "bad", "okay", "good", "great"), "Sentence",
        "SST-5: five-level sentiment of movie-review sentences",
        "SetFit/sst5", "text", "label",
        {"very negative": "terrible", "negative": "bad", "neutral": "okay", "positive": "good",
         "very positive": "great"}, ("terrible", "bad", "okay", "good", "great"),
        ("Rate the sentiment of the movie review as terrible, bad, okay, good or great.",
         "How positive is this review: terrible, bad, okay, good, or great?",
         "Classify the sentence into one of five sentiment levels: terrible, bad, okay, good, great.",
         "Fine-grained sentiment: is the review terrible, bad, okay, good or great?",
         "Give the movie review a sentiment rating from terrible to great.")),
    "subj": TaskSpec(
        "subj", ("subjective", "objective"), "Sentence", "SUBJ: subjective opinion vs objective plot sentence",
        "SetFit/subj", "text", "label",
        {"subjective": "subjective", "objective": "objective"}, ("objective", "subjective"),
        ("Classify the sentence as subjective or objective.",
         "Is this sentence an opinion (subjective) or a statement of fact (objective)?",
         "Decide whether the sentence expresses a personal opinion or describes the plot objectively.",
         "Subjectivity detection: label the sentence subjective or objective.",
         "Does the sentence state a fact or an opinion? subjective, objective")),
    "agnews": TaskSpec(
        "agnews", ("world", "sports", "business", "technology"), "Article", "AG News: topic of a news article",
        "fancyzhx/ag_news", "text", "label",
        {"world": "world", "sports": "sports", "business": "business", "sci/tech": "technology"},
        ("world", "sports", "business", "technology"),
        ("Classify the news article by topic: world, sports, business or technology.",
         "What is the topic of this news article: world, sports, business, or technology?",
         "Which section of the newspaper does this article belong to? World, Sports, Business, Technology",
         "Topic classification of news: world, sports, business, technology.",
         "Is this news story about world events, sports, business, or science and technology?")),
    "trec": TaskSpec(
        "trec", ("abbreviation", "description", "entity", "human", "location", "number"), "Question",
        "TREC: coarse answer type of a question", "CogComp/trec", "text", "coarse_label",
        {"abbr": "abbreviation", "desc": "description", "enty": "entity", "hum": "human", "loc": "location",
         "num": "number"},
        ("abbreviation", "entity", "description", "human", "location", "number"),
        ("Classify the question by the type of its answer: abbreviation, description, entity, human, location "
         "or number.",
         "What kind of answer does this question expect: an abbreviation, a description, an entity, a human, "
         "a location, or a number?",
         "Question classification: abbreviation, description, entity, human, location, number.",
         "Does the question ask for a person, a place, a number, a thing, a description or an abbreviation?",
         "Identify the answer type of the question: abbreviation, description, entity, human, location, number.")),
}

# Khashabi et al. 2022 (prompt waywardness) templates "It was %s ." etc., cut before the label word: the model
# reads format(ex) + " " + label word, so the punctuation that followed %s there is dropped.
WAYWARD_TEMPLATES: dict[str, str] = {
    "sst2": "{text} It was",
    "sst5": "{text} It was",
    "agnews": "{text} Subject:",
    "trec": "{text} Q:",
    "subj": "{text} It's all",
}

# Keys of targets/good_prompts.json are "<task>_<i>" with the task spelled "SST-2", "sst-5", "agnews", ...
GOOD_PROMPTS = Path("targets") / "good_prompts.json"


def _builtin_name(spec: str) -> str | None:
    key = re.sub(r"[-_ ]", "", spec.strip().lower())
    return key if key in BUILTIN else None


# ---- data folders ----------------------------------------------------------------------------------------


REPO_ROOT = Path(__file__).resolve().parents[3]  # a source checkout's root; a ../shared/data beside it is found too


def _candidate_dirs(explicit: str | None) -> list[Path]:
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_dir():
            raise SoftscopeError(f"data folder {p} does not exist: fix --data-dir")
        return [p]
    env = os.environ.get("SOFTSCOPE_DATA")
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise SoftscopeError(f"SOFTSCOPE_DATA={env} is not a folder: point it at the data folder or unset it")
        return [p]
    # ../shared/data next to the current folder, then next to the repository root (src/softscope/engine/tasks.py).
    out = []
    for p in (Path.cwd() / ".." / "shared" / "data", REPO_ROOT / ".." / "shared" / "data"):
        p = p.resolve()
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def data_dir(explicit: str | None = None) -> Path | None:
    """The local data folder: --data-dir, then $SOFTSCOPE_DATA, then ../shared/data (from cwd, then repo); or None."""
    dirs = _candidate_dirs(explicit)
    return dirs[0] if dirs else None


def _local_task_dir(name: str, explicit: str | None) -> tuple[Path | None, list[Path]]:
    dirs = _candidate_dirs(explicit)
    for d in dirs:
        if _find_split(d / name, "train", required=False) is not None:
            return d / name, dirs
    return None, dirs


def _good_prompts(name: str, explicit: str | None) -> list[str]:
    """Reference descriptions for a built-in task from targets/good_prompts.json, if a data folder has it."""
    try:
        dirs = _candidate_dirs(explicit)
    except SoftscopeError:
        return []
    for d in dirs:
        path = d / GOOD_PROMPTS
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return []
            return [str(v) for k, v in data.items() if _builtin_name(str(k).rsplit("_", 1)[0]) == name]
    return []


def _references(spec: TaskSpec, explicit: str | None) -> list[str]:
    out: list[str] = []
    for r in _good_prompts(spec.name, explicit) + list(spec.references):
        if r not in out:
            out.append(r)
    return out


def _generic_references(classes: list[str]) -> list[str]:
    """Reference descriptions for a user task, built from its class names (no one wrote better ones)."""
    listed = ", ".join(classes[:-1]) + f" or {classes[-1]}"
    return [
        f"Classify the text as {listed}.",
        f"Which label fits this text: {', '.join(classes)}?",
        f"Is this text {listed}?",
    ]


# ---- reading files ---------------------------------------------------------------------------------------


@dataclass
class _Table:
    """Rows of one split as read from a file or a Hub split, with where they came from for error messages."""

    where: str
    columns: list[str]
    rows: list[tuple[int, dict]]  # (line or row number, row)
    unit: str = "line"


def _read_text(path: Path) -> str:
    return read_text_file(path, "data file")


def _read_table(path: Path) -> _Table:
    """Rows of a .jsonl / .json (lines or one array) / .csv / .tsv file."""
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise SoftscopeError(f"unsupported file type {suffix or '(none)'!r} for {path}: "
                             "use .jsonl, .json, .csv or .tsv")
    if not path.is_file():
        raise SoftscopeError(f"{path} not found: check the path")
    text = _read_text(path)
    if not text.strip():
        raise SoftscopeError(f"{path} is empty: add examples (one per line)")
    rows: list[tuple[int, dict]] = []
    columns: list[str] = []
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
        limit = csv.field_size_limit()
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents are fine; the default stops at 131,072
        try:
            columns = [c for c in (reader.fieldnames or [])]
            for row in reader:
                if None in row:
                    raise SoftscopeError(f"{path} line {reader.line_num} has more fields than the header: quote "
                                         "fields that contain the delimiter")
                if any(v not in (None, "") for v in row.values()):
                    rows.append((reader.line_num, row))
        except csv.Error as e:
            raise SoftscopeError(f"{path} line {reader.line_num} is not valid {suffix[1:].upper()} ({e}): fix "
                                 "its quoting") from None
        finally:
            csv.field_size_limit(limit)
    elif suffix == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SoftscopeError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}): fix it") from None
        for i, row in enumerate(data, 1):
            if not isinstance(row, dict):
                raise SoftscopeError(f"{path} item {i} is not an object: each item must be like "
                                     '{"text": ..., "label": ...}')
            rows.append((i, row))
    else:
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SoftscopeError(f"{path} line {i} is not valid JSON ({e.msg}): fix or remove that line") from None
            if not isinstance(row, dict):
                raise SoftscopeError(f"{path} line {i} is not a JSON object: each line must be like "
                                     '{"text": ..., "label": ...}')
            rows.append((i, row))
    if not columns:
        for _, row in rows:
            columns.extend(k for k in row if k not in columns)
    if not rows:
        raise SoftscopeError(f"{path} has no examples: add rows below the header" if columns else
                             f"{path} is empty: add examples (one per line)")
    return _Table(str(path), columns, rows)


def _find_split(folder: Path, split: str, required: bool = True) -> Path | None:
    names = {"train": ("train",), "test": ("test",), "dev": ("dev", "validation", "valid", "val")}[split]
    found = [folder / f"{n}{ext}" for n in names for ext in EXTENSIONS if (folder / f"{n}{ext}").is_file()]
    if len(found) > 1:
        raise SoftscopeError(f"{folder} has several {split} files ({', '.join(p.name for p in found)}): keep one")
    if not found:
        if required:
            raise SoftscopeError(f"{folder} has no {split} file: add {split}.jsonl, {split}.csv or {split}.tsv")
        return None
    return found[0]


# ---- columns, labels, templates --------------------------------------------------------------------------

TEXT_COLUMNS = ("text", "sentence", "content", "review", "question", "document")
PAIR_COLUMNS = (("premise", "hypothesis"), ("sentence1", "sentence2"))
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "coarse_label")


def _field_name(column: str) -> str:
    return column.replace("_", " ").strip().capitalize() or "Text"


def _need(table: _Table, column: str, flag: str) -> None:
    if column not in table.columns:
        raise SoftscopeError(f"no column {column!r} in {table.where} (columns: {', '.join(table.columns)}): "
                             f"pass {flag} with one of them")


def _columns(table: _Table, text_column: str | None, label_column: str | None,
             text_b_column: str | None) -> tuple[str, str | None, str]:
    """(text column, second text column or None, label column), from the flags or by name."""
    cols = table.columns
    text_b = text_b_column
    if text_column:
        text = text_column
    else:
        pair = next(((a, b) for a, b in PAIR_COLUMNS if a in cols and b in cols), None) if not text_b else None
        if pair:
            text, text_b = pair
        else:
            text = next((c for c in TEXT_COLUMNS if c in cols), None)
            if text is None:
                raise SoftscopeError(f"no text column in {table.where} (columns: {', '.join(cols)}): "
                                     "pass --text-column with one of them")
    label = label_column or next((c for c in LABEL_COLUMNS if c in cols), None)
    if label is None:
        raise SoftscopeError(f"no label column in {table.where} (columns: {', '.join(cols)}): "
                             "pass --label-column with one of them")
    _need(table, text, "--text-column")
    _need(table, label, "--label-column")
    if text_b:
        _need(table, text_b, "--text-b-column")
    return text, text_b, label


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    if isinstance(v, float):
        return v.is_integer()
    return isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v) is not None


INTEGRAL = re.compile(r"\s*[-+]?\d+(\.0*)?\s*")  # "1", "+1", "1.0", " 1. " read as the integer 1


def _label_str(v: Any) -> str:
    """One spelling per label whatever the file format: 1, "1", 1.0 and "1.0" are all "1"; true/"True" are "true".

    Lists, objects and non-finite numbers are refused by the caller (`_examples`), which knows the line.
    """
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer()):
        return str(int(v))
    if isinstance(v, str) and INTEGRAL.fullmatch(v):
        return str(int(float(v)))
    s = str(v).strip()
    return s.lower() if s.lower() in ("true", "false") else s


def _one_value(v: Any) -> bool:
    """A cell that holds one text or label (not a list, a dict or a non-finite number)."""
    return not (isinstance(v, (list, dict)) or (isinstance(v, float) and not math.isfinite(v)))


def _examples(table: _Table, text: str, text_b: str | None, label: str) -> tuple[list[Example], dict[str, int]]:
    """Examples of one table, plus the line each label was first seen on (for error messages)."""
    out, first = [], {}
    cols = [c for c in (text, text_b, label) if c]
    for n, row in table.rows:
        missing = next((c for c in cols if row.get(c) is None), None)
        if missing:
            raise SoftscopeError(f"{table.where} {table.unit} {n} has no {missing!r} value: fill it in or remove "
                                 f"that {table.unit}")
        col = next((c for c in cols if not _one_value(row[c])), None)
        if col:
            v = row[col]
            raise SoftscopeError(f"{table.where} {table.unit} {n} has a {type(v).__name__} {str(v)[:40]!r} in "
                                 f"{col!r}: give one text or label per {table.unit}")
        y = _label_str(row[label])
        if not y:
            raise SoftscopeError(f"{table.where} {table.unit} {n} has an empty label: fill it in or remove "
                                 f"that {table.unit}")
        first.setdefault(y, n)
        out.append(Example(str(row[text]), y, str(row[text_b]) if text_b else None))
    return out, first


def _check_template(template: str, pair: bool) -> str:
    template = template.rstrip()
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise SoftscopeError(f"bad --template {template!r} ({e}): write literal braces as {{{{ and }}}}") from None
    extra = fields - {"text", "text_b"}
    if extra:
        raise SoftscopeError(f"--template uses unknown fields {sorted(extra)}: use only {{text}} (and {{text_b}})")
    if "text" not in fields:
        raise SoftscopeError("--template has no {text}: add it where the input goes, e.g. 'Sentence : {text} Label :'")
    if pair and "text_b" not in fields:
        raise SoftscopeError("--template has no {text_b} but the task has two texts: add {text_b}")
    if not pair and "text_b" in fields:
        raise SoftscopeError("--template uses {text_b} but the task has one text: pass --text-b-column or drop it")
    return template


def _check_words(words: list[str] | str, classes: list[str]) -> list[str]:
    if isinstance(words, str):
        words = words.split(",")
    words = [str(w).strip() for w in words]
    if len(words) != len(classes):
        raise SoftscopeError(f"--label-words gives {len(words)} words for {len(classes)} classes "
                             f"({', '.join(classes)}): give one word per class in that order")
    if any(not w for w in words):
        raise SoftscopeError("--label-words has an empty word: give one non-empty word per class")
    if len(set(words)) != len(words):
        raise SoftscopeError(f"--label-words repeats a word ({', '.join(words)}): classes need distinct words")
    return words


def _build(name: str, tables: dict[str, _Table], source: str, *, text_column: str | None,
           label_column: str | None, text_b_column: str | None, label_words: list[str] | None,
           template: str | None, seed: int, spec: TaskSpec | None = None, data_dir: str | None = None) -> Task:
    """Validate the tables and turn them into a Task (splitting train 80/20 when there is no test table)."""
    text, text_b, label = _columns(tables["train"], text_column, label_column, text_b_column)
    splits: dict[str, list[Example]] = {}
    firsts: dict[str, dict[str, int]] = {}
    for s, t in tables.items():
        if s != "train":
            _need(t, text, "--text-column")
            _need(t, label, "--label-column")
            if text_b:
                _need(t, text_b, "--text-b-column")
        splits[s], firsts[s] = _examples(t, text, text_b, label)

    seen = list(firsts["train"])
    if spec is not None:
        classes = list(spec.classes)
        for s, t in tables.items():
            bad = [y for y in firsts[s] if y not in classes]
            if bad:
                raise SoftscopeError(f"unknown label {bad[0]!r} in {t.where} {t.unit} {firsts[s][bad[0]]}: "
                                     f"{spec.name} labels are {', '.join(classes)}")
    else:
        numeric = all(_is_int(y) for y in seen)
        classes = sorted(seen, key=int) if numeric else sorted(seen)
        if numeric and label_words is None:
            raise SoftscopeError(f"labels in {tables['train'].where} are numbers ({', '.join(classes)}): pass "
                                 "--label-words with one word per class in that order")
    if len(classes) < 2 or len(seen) < 2:
        raise SoftscopeError(f"{tables['train'].where} has only one class ({seen[0]!r}): a classifier needs "
                             "examples of at least two labels")
    for s in ("test", "dev"):
        if s in tables and spec is None:  # built-ins were checked against their fixed classes above
            bad = [y for y in firsts[s] if y not in classes]
            if bad:
                t = tables[s]
                raise SoftscopeError(f"unknown label {bad[0]!r} in {t.where} {t.unit} {firsts[s][bad[0]]}: it is "
                                     f"not a train class ({', '.join(classes)}); fix it or add train examples of it")

    if "test" not in splits:
        splits["train"], splits["test"] = _split(splits["train"], seed)
        if not splits["test"]:
            raise SoftscopeError(f"{tables['train'].where} is too small to hold out a test set: add examples or "
                                 "give a folder with train and test files")
        source += f" (train/test split {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%}, seed {seed})"

    words = _check_words(label_words, classes) if label_words is not None else (
        spec.words if spec is not None else list(classes))
    if spec is not None:
        text_field = spec.text_field
        default_template = spec.template
    elif text_b:
        text_field = _field_name(text)
        default_template = f"{text_field} : {{text}} {_field_name(text_b)} : {{text_b}} Label :"
    else:
        text_field = _field_name(text)
        default_template = f"{text_field} : {{text}} Label :"
    tmpl = _check_template(template if template else default_template, pair=text_b is not None)
    if spec is not None:
        refs, desc = _references(spec, data_dir), spec.description
    else:
        refs = _generic_references(list(classes))
        desc = f"{name}: {len(classes)} classes ({', '.join(classes)})"
    return Task(name=name, classes=list(classes), label_words=words, template=tmpl, text_field=text_field,
                references=refs, train=splits["train"], test=splits["test"], dev=splits.get("dev", []),
                source=source, description=desc, text_column=text, text_b_column=text_b, label_column=label)


def _split(examples: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded stratified 80/20 split; each class keeps at least one train example; original order kept."""
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_class.setdefault(ex.label, []).append(i)
    test: set[int] = set()
    for label in sorted(by_class):
        idx = by_class[label]
        rng.shuffle(idx)
        k = min(len(idx) - 1, round(TEST_FRACTION * len(idx)))
        test.update(idx[:k])
    return ([ex for i, ex in enumerate(examples) if i not in test],
            [ex for i, ex in enumerate(examples) if i in test])


# ---- the Hub ---------------------------------------------------------------------------------------------


def _hub_tables(hub_id: str, config: str | None, label_column: str | None,
                names: dict[str, str] | None = None, ints: tuple[str, ...] | None = None) -> dict[str, _Table]:
    """Load a Hub dataset and turn its splits into tables, integer labels turned into names where known."""
    import datasets  # slow import: only when the Hub is used

    dd = datasets.load_dataset(hub_id, config) if config else datasets.load_dataset(hub_id)
    label = label_column or next((c for c in LABEL_COLUMNS if c in dd[next(iter(dd))].column_names), "label")

    def table(split: str) -> _Table:
        ds = dd[split]
        feat = ds.features.get(label)
        class_names = list(getattr(feat, "names", None) or [])
        rows = []
        for i, row in enumerate(ds, 1):
            row = dict(row)
            v = row.get(label)
            if isinstance(v, int) and not isinstance(v, bool) and v < 0:
                continue  # hidden test label
            if names is not None:  # a built-in: map whatever the Hub gives to our class names
                key = (class_names[v] if class_names and isinstance(v, int) else
                       row.get("label_text") if isinstance(row.get("label_text"), str) else None)
                if key is not None and key.strip().lower() in names:
                    v = names[key.strip().lower()]
                elif isinstance(v, int) and ints and v < len(ints):
                    v = ints[v]
            elif class_names and isinstance(v, int):
                v = class_names[v]
            row[label] = v
            rows.append((i, row))
        return _Table(f"hub:{hub_id} {split}", list(ds.column_names), rows, unit="row")

    splits = list(dd)
    tables = {"train": table("train")}
    test = table("test") if "test" in splits else None
    val = next((s for s in ("validation", "dev", "valid") if s in splits), None)
    if test is not None and test.rows:
        tables["test"] = test
        if val:
            tables["dev"] = table(val)
    elif val:
        tables["test"] = table(val)  # e.g. GLUE SST-2 hides its test labels
    return tables


def _one_line(e: BaseException) -> str:
    msg = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


# ---- public entry points ---------------------------------------------------------------------------------


def load_task(spec: str, data_dir: str | None = None, text_column: str | None = None,
              label_column: str | None = None, text_b_column: str | None = None,
              label_words: list[str] | None = None, template: str | None = None,
              max_train: int | None = None, max_test: int | None = None, seed: int = 0) -> Task:
    """A task by built-in name, file, folder or `hub:owner/name[:config]`, validated, with seeded subsets."""
    for flag, n in (("--max-train", max_train), ("--max-test", max_test)):
        if n is not None and n < 1:
            raise SoftscopeError(f"{flag} must be at least 1 (got {n})")
    kw = dict(text_column=text_column, label_column=label_column, text_b_column=text_b_column,
              label_words=label_words, template=template, seed=seed)
    spec = str(spec).strip()
    builtin = _builtin_name(spec)
    if spec.startswith("hub:"):
        ref = spec[4:]
        hub_id, _, config = ref.partition(":")
        if not hub_id:
            raise SoftscopeError("hub: needs a dataset id, e.g. hub:stanfordnlp/sst2")
        try:
            tables = _hub_tables(hub_id, config or None, label_column)
        except Exception as e:
            raise SoftscopeError(f"could not load {hub_id} from the Hugging Face Hub ({_one_line(e)}): check the "
                                 "id and your network, or download it and pass a file") from None
        task = _build(hub_id.split("/")[-1], tables, spec, **kw)
    elif builtin and not Path(spec).suffix:
        task = _load_builtin(BUILTIN[builtin], data_dir, **kw)
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            tables = {"train": _read_table(_find_split(path, "train"))}
            for s in ("test", "dev"):
                p = _find_split(path, s, required=False)
                if p is not None:
                    tables[s] = _read_table(p)
            task = _build(path.resolve().name, tables, str(path), **kw)
        elif path.is_file():
            task = _build(path.stem, {"train": _read_table(path)}, str(path), **kw)
        else:
            raise SoftscopeError(f"task {spec!r} not found: give a built-in task ({', '.join(BUILTIN)}), a "
                                 ".jsonl/.csv/.tsv file, a folder with train/test files, or hub:owner/name")
    task.train = task.subset("train", max_train, seed)
    task.test = task.subset("test", max_test, seed)
    task.origin = spec
    return task


def _load_builtin(spec: TaskSpec, data_dir: str | None, **kw) -> Task:
    folder, tried = _local_task_dir(spec.name, data_dir)
    if folder is not None:
        tables = {"train": _read_table(_find_split(folder, "train"))}
        for s in ("test", "dev"):
            p = _find_split(folder, s, required=False)
            if p is not None:
                tables[s] = _read_table(p)
        return _build(spec.name, tables, str(folder), spec=spec, data_dir=data_dir, **kw)
    if data_dir:
        raise SoftscopeError(f"{Path(data_dir) / spec.name} has no train.jsonl: fix --data-dir (it should hold "
                             f"{spec.name}/train.jsonl and test.jsonl)")
    try:
        tables = _hub_tables(spec.hub_id, None, spec.hub_label, names=spec.hub_names, ints=spec.hub_ints)
    except Exception as e:
        where = ", ".join(str(d) for d in tried) or "none found"
        offline = " (HF_HUB_OFFLINE is set: unset it)" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
        raise SoftscopeError(f"no data for {spec.name}: no local copy (looked in: {where}) and the Hub download of "
                             f"{spec.hub_id} failed ({_one_line(e)}); either set SOFTSCOPE_DATA (or --data-dir) to a "
                             f"folder holding {spec.name}/train.jsonl, or go online so it downloads from the Hub"
                             f"{offline}") from None
    kw = dict(kw)
    kw["text_column"] = kw.get("text_column") or spec.hub_text
    kw["label_column"] = kw.get("label_column") or spec.hub_label
    return _build(spec.name, tables, f"hub:{spec.hub_id}", spec=spec, data_dir=data_dir, **kw)


def list_tasks() -> list[dict]:
    """Built-in tasks with their classes, template and where their data would come from."""
    try:
        dirs = _candidate_dirs(None)
    except SoftscopeError:
        dirs = []
    out = []
    for s in BUILTIN.values():
        local = next((d / s.name for d in dirs if _find_split(d / s.name, "train", required=False)), None)
        out.append({"name": s.name, "description": s.description, "classes": list(s.classes),
                    "label_words": s.words, "text_field": s.text_field, "template": s.template,
                    "local": str(local) if local else None, "hub": s.hub_id})
    return out


def load_task_for(cfg) -> Task:
    """The task named by any config that carries TaskOptions fields (task, data_dir, columns, label words, caps)."""
    return load_task(cfg.task, data_dir=cfg.data_dir, text_column=getattr(cfg, "text_column", None),
                     label_column=getattr(cfg, "label_column", None),
                     text_b_column=getattr(cfg, "text_b_column", None), template=getattr(cfg, "template", None),
                     label_words=getattr(cfg, "label_words", None),
                     max_train=getattr(cfg, "max_train", None), max_test=getattr(cfg, "max_test", None),
                     seed=getattr(cfg, "seed", 0))


def holdout_task(task, size: int, seed: int):
    """A copy of the task whose `test` is a held-out split (dev, else a seeded cut of train removed from train)."""
    if task.dev:
        return dataclasses.replace(task, test=list(task.dev)), "dev"
    if len(task.train) <= size:
        raise SoftscopeError(f"task {task.name} has {len(task.train)} training examples and no dev split: "
                             f"lower --holdout below that")
    g = torch.Generator().manual_seed(seed + 7919)
    perm = torch.randperm(len(task.train), generator=g).tolist()
    held = set(perm[:size])
    return (dataclasses.replace(task, train=[e for i, e in enumerate(task.train) if i not in held],
                                test=[e for i, e in enumerate(task.train) if i in held]), "train-holdout")
