"""Tolerant readers of run folders, shared by `report` (the static page) and `serve` (the live explorer).

Both surfaces read the declared records (`softscope.records`) and nothing else: a file comes back as its record
type, missing and unknown fields are tolerated, a broken file reads as absent, so one bad file never fails a whole
page. Files are looked up in the run folder and its method sub-folders (a method may write into RUN/<method>/),
never inside checkpoints/.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..records import (DescribeSummary, DescriptionRow, MetricsRow, Record, RunConfig, RunRecord, TrainSummary,
                       CheckpointRow)
from .errors import SoftscopeError
from .runs import RECORD, _legacy_kind, read_records

SKIP_DIRS = {"checkpoints", "__pycache__"}


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
        """The shallowest file of this name as its declared record (None, None when absent or broken)."""
        p = self.find(name, depth)
        rec = record_at(p) if p is not None else None
        return (p, rec) if rec is not None else (None, None)

    def jsonl(self, name: str, depth: int = 2) -> tuple[Path, list] | tuple[None, list]:
        """The shallowest JSONL file of this name as its declared records ([] when broken or foreign)."""
        p = self.find(name, depth)
        if p is None:
            return None, []
        try:
            rows = read_records(p)
        except SoftscopeError:  # a broken or foreign file: show nothing rather than fail the whole page
            return p, []
        return p, [r for r in rows if isinstance(r, Record)]

    def rel(self, p: Path) -> str:
        return str(p.relative_to(self.root))


def num(x: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def record_at(path: Path, as_type: type | None = None) -> Any:
    """A JSON file as its declared record (or `as_type`); None when it is missing, broken or not an object (one bad
    file, not a failed page)."""
    try:
        rec = read_records(path, as_type) if path.is_file() else None
    except SoftscopeError:
        return None
    return rec if isinstance(rec, Record) else None


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
    cfg = record_at(d / RunConfig.file(), RunConfig) or RunConfig()
    rec = record_at(d / RECORD, RunRecord) or RunRecord()
    summ_files = sorted(d.glob("*_summary.json"))
    facts = record_at(summ_files[0]) if summ_files else None
    s_task, s_model, acc = facts.headline() if facts is not None else (None, None, None)
    stamp = next((p for p in (d / RECORD, d / RunConfig.file()) if p.exists()), None)
    kind = rec.kind if isinstance(rec.kind, str) else None
    try:
        kind = kind or _legacy_kind(d)
    except OSError:
        kind = None
    task_name, model = cfg.names(s_task, s_model)
    return RunFacts(d, kind, str(cfg.command or rec.command or ""), task_name, model, num(acc),
                    stamp.stat().st_mtime if stamp else None, [p.name for p in summ_files])


def is_run_dir(d: Path) -> bool:
    """A folder a softscope command wrote (its record, its config or a summary)."""
    return (d / RECORD).is_file() or (d / RunConfig.file()).is_file() or any(d.glob("*_summary.json"))


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
    """A training run's curves: logged train steps, eval rows, its checkpoints, its summary."""

    train: list[MetricsRow]
    evals: list[MetricsRow]
    checkpoints: list[CheckpointRow]
    summary: TrainSummary
    extra_terms: list[str]  # extra loss terms logged beside the loss (e.g. the waywardness distance)

    @property
    def final_accuracy(self) -> float | None:
        return num(self.summary.final_accuracy)


def training_data(view: RunView) -> TrainingData | None:
    """metrics.jsonl + train_summary.json of the run's root; None when it is not a training run."""
    _, rows = view.jsonl(MetricsRow.file(), depth=0)
    _, summ = view.json(TrainSummary.file(), depth=0)
    if not rows and summ is None:
        return None
    summ = summ if isinstance(summ, TrainSummary) else TrainSummary()
    rows = [r for r in rows if isinstance(r, MetricsRow)]
    train = [r for r in rows if r.event == "train" and num(r.loss) is not None]
    evals = [r for r in rows if r.event == "eval" and num(r.eval_accuracy) is not None]
    cks = summ.checkpoints or [  # an unfinished run: checkpoints from metrics.jsonl
        CheckpointRow(step=r.step, accuracy=r.eval_accuracy, path=f"checkpoints/step-{r.step:05d}.safetensors")
        for r in evals]
    extra = sorted({k for r in train for k, v in r.values.items() if num(v) is not None})
    return TrainingData(train, evals, [c for c in cks if isinstance(c, CheckpointRow)], summ, extra)


# ---- InSPEcT descriptions ----------------------------------------------------------------------------------
@dataclass
class DescribeData:
    """A describe run: its summary, rows, where they live, rows per checkpoint (in step order), score names present."""

    summary: DescribeSummary
    summary_path: Path
    rows: list[DescriptionRow]
    rows_path: Path | None
    by_checkpoint: dict[Any, list[DescriptionRow]]
    score_keys: list[str]


def describe_data(view: RunView) -> DescribeData | None:
    """describe_summary.json (the root's or a sub-folder's) with the descriptions.jsonl beside it; None when absent
    (descriptions.jsonl alone, e.g. a bias probe's sub-run, is another method's data)."""
    spath, summ = view.json(DescribeSummary.file())
    if not isinstance(summ, DescribeSummary):
        return None
    dpath = spath.parent / DescriptionRow.file()
    try:
        rows = [r for r in read_records(dpath, DescriptionRow) if isinstance(r, DescriptionRow)]
    except SoftscopeError:
        rows = []
    by_ck: dict[Any, list[DescriptionRow]] = {}
    for r in rows:
        key = r.checkpoint if r.checkpoint is not None else (r.step if r.step is not None else "prompt")
        by_ck.setdefault(key, []).append(r)
    by_ck = dict(sorted(by_ck.items(), key=lambda kv: num(kv[1][0].step) or 0))
    keys = [k for k in DescriptionRow.SCORES if any(num(r.score(k)) is not None for r in rows)]
    return DescribeData(summ, spath, rows, dpath if dpath.exists() else None, by_ck, keys)


@dataclass
class CellText:
    """One description in a layer-grid cell: its target prompt's seed, its score, its text."""

    seed: int | None
    score: float | None
    text: str


@dataclass
class GridCell:
    """One (source, target) layer pair: the mean score over target prompts and every prompt's text."""

    score: float | None
    texts: list[CellText]


def layer_grid(rows: list[DescriptionRow], key: str) -> dict[tuple[int, int], GridCell]:
    """Per (source, target) layer pair: the mean of score `key` over target prompts, and every prompt's text."""
    vals: dict[tuple[int, int], list[float]] = {}
    texts: dict[tuple[int, int], list[CellText]] = {}
    for r in rows:
        if r.source_layer is None or r.target_layer is None:
            continue
        k = (int(r.source_layer), int(r.target_layer))
        v = num(r.score(key))
        vals.setdefault(k, [])
        if v is not None:
            vals[k].append(v)
        texts.setdefault(k, []).append(CellText(r.target_seed, v, r.shown_text))
    return {k: GridCell(sum(v) / len(v) if v else None, texts[k]) for k, v in vals.items()}
