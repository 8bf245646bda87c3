"""Tolerant readers of run folders, shared by `report` (the static page) and `serve` (the live explorer).

Both surfaces read what the writers declared and nothing else: missing and unknown fields are tolerated, a
broken file reads as absent, so one bad file never fails a whole page. Files are looked up in the run folder
and its method sub-folders (a method may write into RUN/<method>/), never inside checkpoints/.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SoftscopeError
from .runs import RECORD, _legacy_kind, read_json, read_jsonl

SKIP_DIRS = {"checkpoints", "__pycache__"}
# the per-row scores a describe row may carry, in the order a page prefers them
DESC_SCORE_KEYS = ("similarity", "class_rate", "rouge1", "rougeL", "rouge2", "semantic_similarity", "score")


@dataclass
class RunView:
    """Lazy, tolerant access to the files of one run directory (and its method sub-folders)."""

    root: Path
    used_pngs: set = field(default_factory=set)
    skip_prefix: str | None = None  # also skip sub-folders whose name starts with this

    def files(self, pattern: str, depth: int = 2) -> list[Path]:
        """Files matching a glob pattern in the root and up to `depth` folders below it (not checkpoints/)."""
        out = []
        for d in range(depth + 1):
            pat = "/".join(["*"] * d + [pattern])
            for p in sorted(self.root.glob(pat)):
                parts = p.relative_to(self.root).parts[:-1]
                if not p.is_file() or set(parts) & SKIP_DIRS:
                    continue
                if self.skip_prefix and any(d.startswith(self.skip_prefix) for d in parts):
                    continue
                out.append(p)
        return out

    def find(self, name: str, depth: int = 2) -> Path | None:
        """The shallowest file of this name (the root's own file wins over a sub-run's)."""
        hits = self.files(name, depth)
        return hits[0] if hits else None

    def json(self, name: str, depth: int = 2) -> tuple[Path, Any] | tuple[None, None]:
        p = self.find(name, depth)
        if p is None:
            return None, None
        try:
            return p, read_json(p)
        except SoftscopeError:
            return None, None

    def jsonl(self, name: str, depth: int = 2) -> tuple[Path, list[dict]] | tuple[None, list]:
        p = self.find(name, depth)
        if p is None:
            return None, []
        try:
            return p, read_jsonl(p)
        except SoftscopeError:  # a broken or foreign file: show nothing rather than fail the whole page
            return p, []

    def rel(self, p: Path) -> str:
        return str(p.relative_to(self.root))


def pick(row: dict, *names: str, default: Any = None) -> Any:
    """The first of several candidate keys present in a row (method modules name things their own way)."""
    for n in names:
        if isinstance(row, dict) and row.get(n) is not None:
            return row[n]
    return default


def num(x: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def json_object(path: Path) -> dict:
    """A JSON object file, or {} when it is missing, broken or not an object (one bad file, not a failed page)."""
    try:
        obj = read_json(path) if path.exists() else {}
    except SoftscopeError:
        return {}
    return obj if isinstance(obj, dict) else {}


# ---- one run folder at a glance ------------------------------------------------------------------------------
@dataclass
class RunFacts:
    """What a runs list shows of one folder: kind, command, task, model, headline accuracy, date, summaries."""

    path: Path
    kind: str | None
    command: str
    task: str | None
    model: str | None
    accuracy: float | None
    date: float | None  # mtime of its record (seconds since the epoch)
    summaries: list[str]


def run_facts(path: str | os.PathLike) -> RunFacts:
    """The facts of one run folder from run.json / config.json / its first *_summary.json (tolerant)."""
    d = Path(path)
    cfg = json_object(d / "config.json")
    rec = json_object(d / RECORD)
    summ_files = sorted(d.glob("*_summary.json"))
    facts = json_object(summ_files[0]) if summ_files else {}
    c = cfg.get("config") if isinstance(cfg.get("config"), dict) else {}
    task = cfg.get("task") if isinstance(cfg.get("task"), dict) else {}
    info = cfg.get("model_info") if isinstance(cfg.get("model_info"), dict) else {}
    acc = pick(facts, "final_accuracy", "test_accuracy", "accuracy")
    cks = facts.get("checkpoints")
    if acc is None and isinstance(cks, list) and cks and isinstance(cks[-1], dict):
        acc = cks[-1].get("accuracy")  # describe: the last checkpoint's
    stamp = next((p for p in (d / RECORD, d / "config.json") if p.exists()), None)
    kind = rec.get("kind") if isinstance(rec.get("kind"), str) else None
    try:
        kind = kind or _legacy_kind(d)
    except OSError:
        kind = None
    task_name = task.get("name") or facts.get("task") or (c.get("task") if isinstance(c.get("task"), str) else None)
    model = info.get("name") or cfg.get("model") or facts.get("model") or c.get("model")
    return RunFacts(d, kind, str(cfg.get("command") or rec.get("command") or ""), task_name,
                    model if isinstance(model, str) else None, num(acc),
                    stamp.stat().st_mtime if stamp else None, [p.name for p in summ_files])


def is_run_dir(d: Path) -> bool:
    """A folder a softscope command wrote (its record, its config or a summary)."""
    return (d / RECORD).is_file() or (d / "config.json").is_file() or any(d.glob("*_summary.json"))


def find_runs(root: str | os.PathLike, depth: int = 3) -> list[Path]:
    """Run folders at or below `root` (not inside checkpoints/, not through symlinks), shallowest first."""
    root = Path(root)
    out, level = [], [root]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if is_run_dir(d):
                out.append(d)
            try:
                nxt += sorted(c for c in d.iterdir() if c.is_dir() and not c.is_symlink() and c.name not in SKIP_DIRS
                              and not c.name.startswith("."))
            except OSError:
                continue
        level = nxt
    return out


# ---- training --------------------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """A training run's curves: logged train steps, eval rows, checkpoints {step, accuracy, path}, its summary."""

    train: list[dict]
    evals: list[dict]
    checkpoints: list[dict]
    summary: dict
    extra_terms: list[str]  # extra loss terms logged beside the loss (e.g. the waywardness distance)

    @property
    def final_accuracy(self) -> float | None:
        return num(self.summary.get("final_accuracy"))


def training_data(view: RunView) -> TrainingData | None:
    """metrics.jsonl + train_summary.json of the run's root; None when it is not a training run."""
    _, rows = view.jsonl("metrics.jsonl", depth=0)
    _, summ = view.json("train_summary.json", depth=0)
    if not rows and not summ:
        return None
    summ = summ if isinstance(summ, dict) else {}
    rows = [r for r in rows if isinstance(r, dict)]
    train = [r for r in rows if r.get("event") == "train" and num(r.get("loss")) is not None]
    evals = [r for r in rows if r.get("event") == "eval" and num(r.get("eval_accuracy")) is not None]
    cks = summ.get("checkpoints") or [  # an unfinished run: checkpoints from metrics.jsonl
        {"step": r["step"], "accuracy": r["eval_accuracy"], "path": f"checkpoints/step-{r['step']:05d}.safetensors"}
        for r in evals]
    extra = sorted({k for r in train for k in r if k not in ("step", "event", "loss", "lr")
                    and num(r.get(k)) is not None})
    return TrainingData(train, evals, [c for c in cks if isinstance(c, dict)], summ, extra)


# ---- InSPEcT descriptions ----------------------------------------------------------------------------------
def row_score(r: dict, k: str) -> Any:
    """A describe row's score by name (top-level, or inside a "scores" object)."""
    if k in r:
        return r[k]
    sc = r.get("scores")
    return sc.get(k) if isinstance(sc, dict) else None


def desc_text(r: dict) -> str:
    """The text a describe row shows: its cut description (else the whole text)."""
    return str(pick(r, "cut", "text", "description", default=""))


@dataclass
class DescribeData:
    """A describe run: its summary, rows, where they live, rows per checkpoint (in step order), score keys present."""

    summary: dict
    summary_path: Path
    rows: list[dict]
    rows_path: Path | None
    by_checkpoint: dict[Any, list[dict]]
    score_keys: list[str]


def describe_data(view: RunView) -> DescribeData | None:
    """describe_summary.json (the root's or a sub-folder's) with the descriptions.jsonl beside it; None when absent
    (descriptions.jsonl alone, e.g. a bias probe's sub-run, is another method's data)."""
    spath, summ = view.json("describe_summary.json")
    if not isinstance(summ, dict):
        return None
    dpath = spath.parent / "descriptions.jsonl"
    try:
        rows = [r for r in read_jsonl(dpath) if isinstance(r, dict)] if dpath.exists() else []
    except SoftscopeError:
        rows = []
    by_ck: dict[Any, list[dict]] = {}
    for r in rows:
        by_ck.setdefault(pick(r, "checkpoint", "step", default="prompt"), []).append(r)
    by_ck = dict(sorted(by_ck.items(), key=lambda kv: num(kv[1][0].get("step")) or 0))
    keys = [k for k in DESC_SCORE_KEYS if any(num(row_score(r, k)) is not None for r in rows)]
    return DescribeData(summ, spath, rows, dpath if dpath.exists() else None, by_ck, keys)


def layer_grid(rows: list[dict], key: str) -> dict[tuple[int, int], dict]:
    """Per (source, target) layer pair: the mean score over target prompts, and every prompt's text.

    → {(src, tgt): {"score": float | None, "texts": [{"seed", "score", "text"}]}}"""
    grid: dict[tuple[int, int], dict] = {}
    for r in rows:
        s, t = pick(r, "source_layer", "src"), pick(r, "target_layer", "tgt")
        if s is None or t is None:
            continue
        c = grid.setdefault((int(s), int(t)), {"vals": [], "texts": []})
        v = num(row_score(r, key))
        if v is not None:
            c["vals"].append(v)
        c["texts"].append({"seed": r.get("target_seed"), "score": v, "text": desc_text(r)})
    return {k: {"score": sum(c["vals"]) / len(c["vals"]) if c["vals"] else None, "texts": c["texts"]}
            for k, c in grid.items()}
