"""The plots of a describe run: class-rate heatmaps and accuracy against the primary score."""

from __future__ import annotations

from pathlib import Path

import torch

from ...engine.runs import save_figure
from .scores import score_of


def _plots(out: Path, rows: list[dict], summary: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    last = summary["checkpoints"][-1]
    lrows = [r for r in rows if r["checkpoint"] == last["checkpoint"]]
    src = sorted({r["source_layer"] for r in lrows})
    tgt = sorted({r["target_layer"] for r in lrows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, metric, title in ((axes[0], "class_rate", "class rate"), (axes[1], "similarity", "semantic similarity")):
        grid = torch.full((len(src), len(tgt)), float("nan"))
        for i, s in enumerate(src):
            for j, t in enumerate(tgt):
                v = [r[metric] for r in lrows if r["source_layer"] == s and r["target_layer"] == t]
                if v:
                    grid[i, j] = sum(v) / len(v)
        im = ax.imshow(grid.numpy(), origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(tgt)), tgt, fontsize=7)
        ax.set_yticks(range(len(src)), src, fontsize=7)
        ax.set_xlabel("target layer ℓ*")
        ax.set_ylabel("source layer ℓ")
        ax.set_title(f"{title} (mean over {last['target_prompts']} target prompts)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{summary['task']}: step {last['step']}, accuracy "
                 + (f"{last['accuracy']:.3f}" if last["accuracy"] is not None else "n/a"))
    fig.tight_layout()
    paths.append(save_figure(fig, out / "heatmap_class_rate.png"))

    cks = [c for c in summary["checkpoints"] if c["accuracy"] is not None]
    if len(cks) >= 2:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        acc = [c["accuracy"] for c in cks]
        for key, label in (("best.class_rate", "max class rate"), ("class_rate_mean", "mean class rate"),
                           ("best.similarity", "max similarity"), ("similarity_topk", "top-k similarity"),
                           ("best.rouge1", "max ROUGE-1")):
            rho = summary["correlation"].get(key, {}).get("spearman", float("nan"))
            ax.plot(acc, [score_of(c, key) for c in cks], "o", ms=5, alpha=0.8, label=f"{label} (ρ={rho:.2f})")
        for c in cks:
            ax.annotate(str(c["step"]), (c["accuracy"], score_of(c, "similarity_topk")), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel("checkpoint accuracy")
        ax.set_ylabel("description score")
        ax.set_title(f"{summary['task']}: description quality vs accuracy")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(save_figure(fig, out / "accuracy_vs_score.png"))
    return paths


# ---- the positive control ------------------------------------------------------------------------------------
