"""Sweeps: a run folder's keyed units, what is done (resume), and landing each finished unit on the driver.

Every sweep command is a list of `Unit`s run by the executor with one `WorkerContext`; what differs is how a
sweep knows its finished units. A `RowSweep` reads them from its rows file (one or more rows per unit); a
`WeightSweep` from its sub-runs in <run>/w-<weight>/ (one per fluency weight, plus their table and plot). A unit's
sub-run is written in place when it runs in the driver's process and comes back as files from a Ray worker
(`executor.sub_run` / `executor.land`), so either way the driver alone writes the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable

from ..records import DiscreteRun, SweepEntry, WeightSweepSummary
from .executor import PLACEMENT_FIELDS, ExecutorOptions, Unit, WorkerContext, land, run_units
from .models import ModelAdapter, load_model, load_model_for
from .runs import Run, config_dict, read_json, save_figure
from .stats import interval_of
from .tasks import load_task_for


class Sweep:
    """Units still to do in one run folder and how a finished one lands on the driver. By default a unit writes
    a sub-run folder (`args["dir"]`) and returns (value, files): its files land there."""

    def __init__(self, run: Run, units: Iterable[Unit] = ()):
        self.run = run
        self.units = list(units)

    def record(self, unit: Unit, result: Any) -> None:
        land(unit.args["dir"], result[1])  # a worker's sub-run folder, written here through a Run

    def execute(self, work: Callable[[WorkerContext, Unit], Any], ctx: WorkerContext, *,
                setup: Callable[..., WorkerContext], setup_args: tuple, options: ExecutorOptions,
                progress: bool = True) -> None:
        """Run the units and record each on the driver (see `run_sweeps`)."""
        run_sweeps([self], work, ctx, setup=setup, setup_args=setup_args, options=options, progress=progress)


def run_sweeps(sweeps: list[Sweep], work: Callable[[WorkerContext, Unit], Any], ctx: WorkerContext, *,
               setup: Callable[..., WorkerContext], setup_args: tuple, options: ExecutorOptions,
               progress: bool = True) -> None:
    """The units of every sweep in one executor call (on a cluster they run side by side), in order; `ctx` is the
    driver's context, `setup(*setup_args)` a worker's. Each finished unit is recorded by its own sweep."""
    owner = {u.key: s for s in sweeps for u in s.units}
    run_units([u for s in sweeps for u in s.units], work, setup=setup, setup_args=setup_args, ctx=ctx,
              options=options, on_result=lambda u, r: owner[u.key].record(u, r), progress=progress)


class RowSweep(Sweep):
    """A sweep whose finished units are rows of one JSONL file in its run folder, `key(row)` naming the unit
    (or the part of it) a row belongs to. `rows_of(unit, result)` turns a unit's result into (rows, sub-run files)
    on the driver; by default the result is that pair."""

    def __init__(self, run: Run, rows_file: str, key: Callable[[dict], Hashable],
                 rows_of: Callable[[Unit, Any], tuple[list[dict], dict | None]] | None = None):
        super().__init__(run)
        self.rows_file, self.key = rows_file, key
        self.rows_of = rows_of or (lambda unit, result: result)
        self.rows = run.read_jsonl(rows_file)  # the finished rows (resume)

    def drop_partial(self, whole: Callable[[list[dict]], bool]) -> None:
        """Forget the rows of every key whose rows are not `whole` (a unit cut short is done again); the rows file
        is rewritten only when a row was dropped."""
        groups: dict[Hashable, list[dict]] = {}
        for r in self.rows:
            groups.setdefault(self.key(r), []).append(r)
        kept = [r for r in self.rows if whole(groups[self.key(r)])]
        if len(kept) != len(self.rows):
            self.run.write_jsonl(self.rows_file, kept)
        self.rows = kept

    @property
    def done(self) -> dict[Hashable, dict]:
        """{key: its last row} of every finished row."""
        return {self.key(r): r for r in self.rows}

    def record(self, unit: Unit, result: Any) -> None:
        self.land(unit, *self.rows_of(unit, result))

    def land(self, unit: Unit, rows: list[dict], files: dict[str, bytes] | None = None) -> None:
        """A finished unit on the driver: its sub-run files first (from a worker), then its rows, appended together
        (a row always has its files; resume never recomputes them)."""
        if files is not None:
            land(unit.args["dir"], files)
        self.run.append_jsonl(self.rows_file, rows)
        self.rows.extend(rows)


@dataclass
class SweepContext(WorkerContext):
    """The context of a weight sweep's units: the task model and task, and the model a unit samples prompts from
    (the task model unless the config names a `policy` model)."""

    policy: ModelAdapter


def sweep_setup(cfg) -> SweepContext:
    """A Ray worker's context, built from the config alone (once per worker, then kept): model, task, policy."""
    adapter = load_model_for(cfg)
    name = getattr(cfg, "policy", "")
    policy = load_model(name, device=cfg.device, dtype=cfg.dtype) if name and name != adapter.name else adapter
    return SweepContext(adapter, load_task_for(cfg), policy)


class WeightSweep(Sweep):
    """One weight sweep in its run folder: the finished weights' summaries (read back on resume) and a unit for
    every other weight. `record` takes a unit's (summary, files) on the driver; `finish` writes the table."""

    def __init__(self, run: Run, kind: str, weights: list[float]):
        super().__init__(run)
        self.kind = kind
        self.weights = weights
        self.summaries: dict[float, dict] = {}

    def record(self, unit: Unit, result: tuple[dict, dict | None]) -> None:
        super().record(unit, result)
        self.summaries[unit.args["weight"]] = result[0]

    def finish(self, task_name: str, model_name: str, drop: tuple[str, ...] = ()) -> tuple[list[dict], dict]:
        """<kind>.jsonl (one row per weight, minus the `drop` keys) and <kind>_summary.json; returns (rows, summary)."""
        rows = [self.summaries[w] for w in self.weights]
        self.run.write_jsonl(f"{self.kind}.jsonl", [{k: v for k, v in r.items() if k not in drop} for r in rows])
        entries = []
        for d in map(DiscreteRun.from_dict, rows):
            ci = interval_of(d.test_accuracy, d.test_examples or 0) if d.test_accuracy is not None else None
            entries.append(SweepEntry(fluency_weight=d.fluency_weight, text=d.text, test_accuracy=d.test_accuracy,
                                      perplexity=d.perplexity, selected_step=d.selected_step,
                                      test_examples=d.test_examples, test_ci95=ci))
        summary = WeightSweepSummary(task=task_name, model=model_name, runs=entries)
        self.run.write_json(f"{self.kind}_summary.json", summary)
        return rows, summary.to_dict()


def plan_weights(run: Run, kind: str, weights: list[float], sub: Callable[[float], tuple[str, dict, str]],
                 marker: str, args: dict[str, Any], prefix: str = "") -> WeightSweep:
    """The sweep over `weights` in `run`: a sub-run <run>/w-<weight>/ that is finished (its `marker` summary there,
    same settings) is read back, every other weight becomes a unit keyed `<prefix>w-<weight>` with `args`, its
    weight and its folder. `sub(w)` gives the sub-run's (kind, settings, command): a folder with other settings is
    refused here, before any unit runs."""
    sweep = WeightSweep(run, kind, list(dict.fromkeys(weights)))
    for w in sweep.weights:
        dest = run.path / f"w-{w:g}"
        found = finished(dest, *sub(w), marker)
        if found is not None:
            sweep.summaries[w] = found
        else:
            sweep.units.append(Unit(f"{prefix}w-{w:g}", {**args, "weight": w, "dir": str(dest)}))
    return sweep


def finished(dest: Path, kind: str, settings: dict, command: str, marker: str) -> dict | None:
    """The `marker` JSON of a finished sub-run in `dest` made with `settings`; None when there is none yet (or it
    was cut short); a sub-run there with other settings is refused (SoftscopeError)."""
    if not dest.exists():
        return None
    with Run.open(dest, kind, settings, command=command) as sub:
        return read_json(dest / marker) if sub.existing and (dest / marker).exists() else None


def sweep_settings(cfg) -> dict:
    """A weight sweep's settings without the weight list (one sub-run's fingerprint names its own weight) and
    without where its units run (the same results locally and on Ray)."""
    return {k: v for k, v in config_dict(cfg).items() if k != "fluency_weight" and k not in PLACEMENT_FIELDS}


def plot_curves(rows: list[dict], path: Path, key: str, title: str) -> None:
    """One training curve per fluency weight (held-out accuracy by step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for r in rows:
        c = r["curve"]
        ax.plot([p["step"] for p in c], [p[key] for p in c], marker="o", ms=3, label=f"w={r['fluency_weight']:g}")
    ax.set_xlabel("step")
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
