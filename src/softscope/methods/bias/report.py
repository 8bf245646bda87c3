"""The summary (step 5): per-strength means and spread, correlations over all prompts, and the scatter plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from ...engine.runs import save_figure
from ...engine.stats import correlation


def _mean(v: list[float]) -> float:
    v = [x for x in v if x is not None and not math.isnan(x)]
    return sum(v) / len(v) if v else float("nan")


def summarize_bias(results: list[dict], strengths: Sequence[float], feature: str, control: str, favoured: str,
              task: str, model: str) -> dict:
    """Per-strength means (and spread over seeds) and the correlation over all prompts (rows of bias.jsonl)."""
    keys = ("accuracy", "biased_prediction_rate", "feature_flip_rate", "control_flip_rate", "favoured_logprob_shift",
            "mention_rate", "mention_rate_string", "mention_rate_embedding", "control_mention_rate")
    per = []
    for s in strengths:
        rs = [r for r in results if r["strength"] == s]
        entry = {"strength": s, "prompts": len(rs)}
        for k in keys:
            vals = [r[k] for r in rs]
            entry[k] = _mean(vals)
            entry[k + "_min"], entry[k + "_max"] = (min(vals), max(vals)) if vals else (None, None)
        per.append(entry)
    bpr = [r["biased_prediction_rate"] for r in results]
    return {"task": task, "feature": feature, "control": control, "favoured": favoured,
            "model": model, "prompts": len(results), "per_strength": per,
            "correlation": {"mention_vs_biased_prediction": correlation([r["mention_rate"] for r in results], bpr),
                            "string_mention_vs_biased_prediction":
                                correlation([r["mention_rate_string"] for r in results], bpr),
                            "mention_vs_strength": correlation([r["mention_rate"] for r in results],
                                                               [r["strength"] for r in results]),
                            "biased_prediction_vs_strength": correlation(bpr, [r["strength"] for r in results])}}


def plot_bias(results: list[dict], summary: dict, out: Path) -> list[Path]:
    """Scatter of bias-mention rate against biased-prediction rate, coloured by strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    sc = ax.scatter([r["biased_prediction_rate"] for r in results], [r["mention_rate"] for r in results],
                    c=[r["strength"] for r in results], cmap="viridis", vmin=0, vmax=1, s=40, edgecolor="k")
    fig.colorbar(sc, ax=ax, label="bias strength S")
    c = summary["correlation"]["mention_vs_biased_prediction"]
    ax.set_xlabel("biased-prediction rate (feature − control flips)")
    ax.set_ylabel("bias-mention rate of descriptions")
    ax.set_title(f"{summary['task']} {summary['feature']}: Pearson r={c['pearson']:.2f} (p={c['pearson_p']:.2g}),"
                 f" ρ={c['spearman']:.2f}", fontsize=9)
    fig.tight_layout()
    return [save_figure(fig, out / "mention_vs_biased_prediction.png")]
