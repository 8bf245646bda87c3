"""Weight sweeps: one sub-run per fluency weight in <run>/w-<weight>/, plus their table and plot.

Shared by the discrete-prompt methods (PEZ, RLPrompt), which differ only in how one sub-run is made.
"""

from __future__ import annotations

from pathlib import Path

from .runs import Run, config_dict, save_figure
from .stats import interval_of


def weight_sweep(cfg, run: Run, kind: str, run_one, task_name: str, model_name: str,
                 drop: tuple[str, ...] = ()) -> tuple[list[dict], dict]:
    """One sub-run per fluency weight in <run>/w-<weight>/ (a finished one with the same settings is reused, one
    with other settings refused by its fingerprint), then <kind>.jsonl (one row per weight, minus the `drop`
    keys) and <kind>_summary.json. Shared by PEZ and RLPrompt."""
    rows = [run_one(w, run.path / f"w-{w:g}") for w in cfg.fluency_weight]
    run.write_jsonl(f"{kind}.jsonl", [{k: v for k, v in r.items() if k not in drop} for r in rows])
    summary = {"task": task_name, "model": model_name, "runs": [
        {**{k: r[k] for k in ("fluency_weight", "text", "test_accuracy", "perplexity", "selected_step")},
         "test_examples": r.get("test_examples"),
         "test_ci95": interval_of(r["test_accuracy"], r.get("test_examples") or 0)
         if r["test_accuracy"] is not None else None} for r in rows]}
    run.write_json(f"{kind}_summary.json", summary)
    return rows, summary


def sweep_settings(cfg) -> dict:
    """A weight sweep's settings without the weight list (one sub-run's fingerprint names its own weight)."""
    return {k: v for k, v in config_dict(cfg).items() if k != "fluency_weight"}


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
