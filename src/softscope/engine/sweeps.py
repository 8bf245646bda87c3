"""Weight sweeps: one sub-run per fluency weight in <run>/w-<weight>/, each an executor unit, plus their table and plot.

Shared by the discrete-prompt methods (PEZ, RLPrompt) and the trade-off that runs both: they differ only in how one
sub-run is made. A unit's sub-run is written in place when it runs in the driver's process and comes back as files
from a Ray worker (`executor.sub_run` / `executor.land`), so either way the driver alone writes the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .executor import PLACEMENT_FIELDS, Unit, land
from .models import ModelAdapter, load_model, load_model_for
from .runs import Run, config_dict, read_json, save_figure
from .stats import interval_of
from .tasks import Task, load_task_for


@dataclass
class SweepContext:
    """What every unit of a weight sweep shares: the task model, the task, the policy model (RLPrompt's; else the
    task model), whether a unit writes its sub-run in place (the driver's own process) and whether it shows bars."""

    adapter: ModelAdapter
    task: Task
    policy: ModelAdapter
    in_place: bool = True
    progress: bool = True


def sweep_setup(cfg) -> SweepContext:
    """A Ray worker's context, built from the config alone (once per worker, then kept): model, task, policy."""
    adapter = load_model_for(cfg)
    name = getattr(cfg, "policy", "")
    policy = load_model(name, device=cfg.device, dtype=cfg.dtype) if name and name != adapter.name else adapter
    return SweepContext(adapter, load_task_for(cfg), policy, in_place=False, progress=False)


@dataclass
class WeightSweep:
    """One weight sweep in its run folder: the finished weights' summaries (read back on resume) and a unit for
    every other weight. `record` takes a unit's (summary, files) on the driver; `finish` writes the table."""

    run: Run
    kind: str
    weights: list[float]
    summaries: dict[float, dict] = field(default_factory=dict)
    units: list[Unit] = field(default_factory=list)

    def record(self, unit: Unit, result: tuple[dict, dict | None]) -> None:
        summary, files = result
        land(unit.args["dir"], files)  # a worker's sub-run folder, written here through a Run
        self.summaries[unit.args["weight"]] = summary

    def finish(self, task_name: str, model_name: str, drop: tuple[str, ...] = ()) -> tuple[list[dict], dict]:
        """<kind>.jsonl (one row per weight, minus the `drop` keys) and <kind>_summary.json; returns (rows, summary)."""
        rows = [self.summaries[w] for w in self.weights]
        self.run.write_jsonl(f"{self.kind}.jsonl", [{k: v for k, v in r.items() if k not in drop} for r in rows])
        summary = {"task": task_name, "model": model_name, "runs": [
            {**{k: r[k] for k in ("fluency_weight", "text", "test_accuracy", "perplexity", "selected_step")},
             "test_examples": r.get("test_examples"),
             "test_ci95": interval_of(r["test_accuracy"], r.get("test_examples") or 0)
             if r["test_accuracy"] is not None else None} for r in rows]}
        self.run.write_json(f"{self.kind}_summary.json", summary)
        return rows, summary


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
