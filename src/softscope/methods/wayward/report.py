"""Selection, statistics, tables and plots of a sweep; `compare` across sweeps (e.g. two models)."""

from __future__ import annotations

import statistics
from pathlib import Path

from ...engine.errors import SoftscopeError
from ...engine.runs import read_json, read_jsonl, save_figure
from ...engine.stats import N_BOOT, paired_bootstrap


# ---- summary, plots, comparison ------------------------------------------------------------------------
def seed_means(rows: list[dict]) -> list[dict]:
    """One row per (target, γ): accuracy, prompt-F1 and distances averaged over train seeds (the authors average
    seeds before selecting a γ) and `scores`, the per-test-example correctness averaged over seeds (when every
    seed's row carries it: sweeps from before it was recorded have none)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["target"], r["gamma"]), []).append(r)
    out = []
    for rs in groups.values():
        m = dict(rs[0])
        m.pop("correct", None)
        m["seeds"] = [r.get("seed") for r in rs]
        for k in ("accuracy", "f1", "distance"):
            m[k] = statistics.fmean(r[k] for r in rs)
        cs = [r.get("correct") for r in rs]
        if all(cs) and len({len(c) for c in cs}) == 1:
            m["scores"] = [sum(c[i] == "1" for c in cs) / len(cs) for i in range(len(cs[0]))]
        out.append(m)
    return out


def select(mine: list[dict], threshold: float, selection: str) -> tuple[dict | None, dict | None, bool]:
    """(chosen prompt, reference prompt, reached) for one target's seed-mean rows, one per γ.

    softscope: the most accurate prompt with F1 >= threshold (ties: higher F1), against the γ = 0 prompt; none
    when no prompt reaches the threshold. paper (main.py as released): sort the γ by accuracy, best first (a
    stable sort: ties keep γ order), take the first whose F1 is strictly above the threshold, or the most
    accurate one when none is (`reached` False), against the most accurate prompt of all γ.
    """
    if selection == "paper":
        ranked = sorted(mine, key=lambda r: r["accuracy"], reverse=True)
        hit = next((r for r in ranked if r["f1"] > threshold), None)
        return (hit or ranked[0]), ranked[0], hit is not None
    base = next((r for r in mine if r["gamma"] == 0), None)
    ok = [r for r in mine if r["f1"] >= threshold]
    return (max(ok, key=lambda r: (r["accuracy"], r["f1"])) if ok else None), base, bool(ok)


def per_target(rows: list[dict], threshold: float, within: float, selection: str = "softscope",
               n_boot: int = N_BOOT, baseline_min: float = 0.0) -> list[dict]:
    """Per target: the γ = 0 accuracy, the accuracy of e(t) untrained, the prompt `select` chooses and its drop
    against the reference, with a 95% paired bootstrap interval over test examples when per-example scores exist.
    `within` is claimed only when the whole interval is at most the margin (`within_basis` "ci95"); without
    scores it falls back to the point estimate ("point"). Targets whose γ = 0 prompt is below `baseline_min`
    are marked (`baseline_ok` False) and never count as within."""
    agg = seed_means(rows)
    out = []
    for name in dict.fromkeys(r["target"] for r in agg):
        mine = [r for r in agg if r["target"] == name]
        base = next((r for r in mine if r["gamma"] == 0), None)
        if base is None:
            continue
        best, ref, reached = select(mine, threshold, selection)
        drop = ci = None
        if best is not None:
            drop = ref["accuracy"] - best["accuracy"]
            if best is ref:
                ci = [0.0, 0.0]
            elif n_boot and "scores" in best and "scores" in ref:
                ci = paired_bootstrap(ref["scores"], best["scores"], n_boot=n_boot, seed=0)["ci95"]
        baseline_ok = base["accuracy"] >= baseline_min
        bound = ci[1] if ci is not None else drop
        out.append({"target": name, "n_tokens": mine[0]["n_tokens"], "acc_gamma0": base["accuracy"],
                    "acc_start": mine[0].get("start_accuracy"), "seeds": len(base["seeds"]),
                    "reference_gamma": ref["gamma"] if ref else None, "reached": reached,
                    "best_gamma": best["gamma"] if best else None, "best_f1": best["f1"] if best else None,
                    "best_accuracy": best["accuracy"] if best else None, "drop": drop, "drop_ci95": ci,
                    "drop_vs_gamma0": base["accuracy"] - best["accuracy"] if best else None,
                    "within": bool(reached and baseline_ok and drop is not None and bound <= within + 1e-9),
                    "within_basis": "ci95" if ci is not None else "point",
                    "significant_drop": ci is not None and ci[0] > 0, "baseline_ok": baseline_ok,
                    "best_steps": best.get("steps") if best else None, "gamma0_steps": base.get("steps"),
                    "max_f1": max(r["f1"] for r in mine)})
    return out


def summarize_wayward(rows: list[dict], threshold: float = 0.9, within: float = 0.02, selection: str = "softscope",
              n_boot: int = N_BOOT, baseline_min: float = 0.0) -> dict:
    """The headline figures: share of targets reached (F1 over the threshold), mean/median drop, share within the
    margin (by the interval when there is one), targets below the baseline accuracy, per-γ means."""
    tg = per_target(rows, threshold, within, selection, n_boot, baseline_min)
    reached = [t for t in tg if t["reached"]]
    drops = [t["drop"] for t in reached]
    by_gamma = {}
    for g in sorted({r["gamma"] for r in rows}):
        rs = [r for r in rows if r["gamma"] == g]
        by_gamma[f"{g:g}"] = {"rows": len(rs), "mean_accuracy": statistics.fmean(r["accuracy"] for r in rs),
                              "mean_f1": statistics.fmean(r["f1"] for r in rs),
                              "share_f1_at_threshold": sum(r["f1"] >= threshold for r in rs) / len(rs),
                              "mean_distance": statistics.fmean(r["distance"] for r in rs)}
    return {"f1_threshold": threshold, "within": within, "selection": selection, "targets": len(tg),
            "rows": len(rows), "share_reached": len(reached) / len(tg) if tg else None,
            "mean_drop": statistics.fmean(drops) if drops else None,
            "median_drop": statistics.median(drops) if drops else None,
            "share_within": sum(t["within"] for t in tg) / len(tg) if tg else None,
            "share_within_of_reached": sum(t["within"] for t in reached) / len(reached) if reached else None,
            "significant_drops": sum(t["significant_drop"] for t in tg),
            "below_baseline": [t["target"] for t in tg if not t["baseline_ok"]], "baseline_min": baseline_min,
            "mean_acc_gamma0": statistics.fmean(t["acc_gamma0"] for t in tg) if tg else None,
            "by_gamma": by_gamma, "per_target": tg}


def plot_wayward(rows: list[dict], out: Path, threshold: float, title: str = "") -> list[Path]:
    """f1_vs_accuracy.png (one colour per γ) and drop_vs_length.png (accuracy drop vs prompt length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return []
    gammas = sorted({r["gamma"] for r in rows})
    cmap = plt.get_cmap("viridis", max(len(gammas), 2))
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, g in enumerate(gammas):
        rs = [r for r in rows if r["gamma"] == g]
        ax.scatter([r["f1"] for r in rs], [r["accuracy"] for r in rs], color=cmap(i), label=f"γ={g:g}", s=22)
    ax.axvline(threshold, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="prompt-F1 of the Euclidean projection vs target", ylabel="task accuracy", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p1 = save_figure(fig, out / "f1_vs_accuracy.png")

    means = seed_means(rows)
    acc0 = {r["target"]: r["accuracy"] for r in means if r["gamma"] == 0}
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, g in enumerate(gammas):
        rs = [r for r in means if r["gamma"] == g and g > 0 and r["target"] in acc0]
        if rs:
            ax.scatter([r["n_tokens"] for r in rs], [acc0[r["target"]] - r["accuracy"] for r in rs], color=cmap(i),
                       label=f"γ={g:g}", s=22, alpha=0.8)
    best = [t for t in per_target(rows, threshold, 0.02, n_boot=0) if t["reached"] and t["drop"] is not None]
    if best:
        ax.scatter([t["n_tokens"] for t in best], [t["drop"] for t in best], marker="*", s=90, color="crimson",
                   label=f"best with F1≥{threshold:g}")
    _length_axis(ax, "accuracy drop vs γ = 0", title)
    fig.tight_layout()
    return [p1, save_figure(fig, out / "drop_vs_length.png")]


def _length_axis(ax, ylabel: str, title: str) -> None:
    """Log prompt-length x axis with plain tick labels (4, 10, 40), the 2-point margin, and a legend if any."""
    import matplotlib.ticker

    ax.axhline(0.02, color="grey", ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="prompt length n (tokens of the target)", ylabel=ylabel, title=title)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _sweep(d: str | Path) -> tuple[list[dict], dict, dict]:
    """A finished (or partly finished) sweep's rows, its per_target settings (threshold, margin, selection rule,
    resamples, baseline; defaults for sweeps older than a setting) and its whole config.json."""
    cfg = read_json(Path(d) / "config.json")
    rows = read_jsonl(Path(d) / "wayward.jsonl")
    if not rows:
        raise SoftscopeError(f"{d} has no wayward.jsonl rows yet: run or resume the sweep first")
    c = cfg["config"]
    opts = {"threshold": c["f1_threshold"], "within": c["within"], "selection": c.get("selection", "softscope"),
            "n_boot": c.get("bootstrap", N_BOOT), "baseline_min": c.get("baseline_min", 0.0)}
    return rows, opts, cfg


def compare(run_dirs: list[str | Path]) -> list[dict]:
    """One row per sweep (model × task): the headline figures side by side, recomputed from wayward.jsonl."""
    out = []
    for d in run_dirs:
        rows, opts, cfg = _sweep(d)
        s = summarize_wayward(rows, **opts)
        info = cfg.get("model_info", {})
        out.append({"run": str(d), "model": rows[0]["model"], "task": rows[0]["task"],
                    "layers": info.get("layers"), "width": info.get("width"),
                    "embedding_mean_sq_norm": info.get("embedding_mean_sq_norm"),
                    "distance_norm": cfg["config"].get("distance_norm", "none"),
                    "targets": s["targets"], "rows": s["rows"], "mean_acc_gamma0": s["mean_acc_gamma0"],
                    "share_reached": s["share_reached"], "share_within": s["share_within"],
                    "mean_drop": s["mean_drop"], "median_drop": s["median_drop"],
                    "compute_seconds": sum(r.get("seconds", 0.0) for r in rows)})
    return out


def compare_table(rows: list[dict]) -> str:
    """A Markdown table of `compare` rows."""
    def f(x, pct=False, sign=False):
        return "–" if x is None else (f"{100 * x:.1f}%" if pct else f"{x:+.3f}" if sign else f"{x:.3f}")

    lines = ["| model | layers × width | task | targets | acc γ=0 | F1≥thr reached | within margin | mean drop | "
             "median drop | compute s |", "|---" * 10 + "|"]
    for r in rows:
        shape = f"{r['layers']} × {r['width']}" if r.get("layers") else "–"
        lines.append(f"| {r['model']} | {shape} | {r['task']} | {r['targets']} | {f(r['mean_acc_gamma0'])} | "
                     f"{f(r['share_reached'], True)} | {f(r['share_within'], True)} | {f(r['mean_drop'], sign=True)} | "
                     f"{f(r['median_drop'], sign=True)} | {r['compute_seconds']:.0f} |")
    if len({r["model"] for r in rows}) > 1:
        lines.append("\nModels of different families also differ in tokenizer, training data and embedding scale, "
                     "not only in size: read a size trend only within one family.")
        raw = {r["model"]: r["embedding_mean_sq_norm"] for r in rows
               if r.get("distance_norm", "none") == "none" and r.get("embedding_mean_sq_norm")}
        if len(raw) > 1 and max(raw.values()) > 2 * min(raw.values()):
            lines.append("Raw distances (--distance-norm none) on models whose mean squared embedding norms differ ("
                         + ", ".join(f"{m} {v:.3g}" for m, v in raw.items()) + "): the same γ does not weigh the "
                         "same; rerun with --distance-norm embedding to compare γ across these models.")
    return "\n".join(lines)


def target_table(run_dirs: list[str | Path]) -> str:
    """A Markdown table with one row per target of each sweep: accuracy / prompt-F1 at every γ, then the best
    prompt with F1 ≥ threshold, its drop vs γ = 0 and whether that is within the margin (the per-target detail
    behind `compare`)."""
    runs = [_sweep(d) for d in run_dirs]
    gammas = sorted({r["gamma"] for rows, *_ in runs for r in rows})
    lines = ["| model | task | target (tokens) | e(t) untrained | " + " | ".join(f"γ={g:g}" for g in gammas)
             + " | chosen (F1 over thr) | drop [95% CI] | within |", "|---" * (8 + len(gammas)) + "|"]
    for rows, opts, _ in runs:
        for t in per_target(rows, **opts):
            mine = {r["gamma"]: r for r in seed_means(rows) if r["target"] == t["target"]}
            cells = ["–" if g not in mine else f"{mine[g]['accuracy']:.3f} / {mine[g]['f1']:.2f}" for g in gammas]
            best = "–" if t["best_gamma"] is None else (f"γ={t['best_gamma']:g}: {t['best_accuracy']:.3f}"
                                                        + ("" if t["reached"] else " (F1 not reached)"))
            drop = "–" if t["drop"] is None else f"{t['drop']:+.3f}"
            if t["drop_ci95"] is not None:
                drop += f" [{t['drop_ci95'][0]:+.3f}, {t['drop_ci95'][1]:+.3f}]"
            start = "–" if t["acc_start"] is None else f"{t['acc_start']:.3f}"
            first = next(iter(mine.values()))
            lines.append(f"| {first['model']} | {first['task']} | {t['target']} ({t['n_tokens']}) | {start} | "
                         + " | ".join(cells) + f" | {best} | {drop} | {'yes' if t['within'] else 'no'} |")
    return "\n".join(lines)


def compare_plot(run_dirs: list[str | Path], path: str | Path) -> Path:
    """compare_drop_vs_length.png: each sweep's per-target drop (best F1 ≥ threshold prompt vs γ = 0) against the
    prompt length, one colour per model × task, so the model-size axis is read off one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    markers = "osD^v<>P"
    for i, d in enumerate(run_dirs):
        rows, opts, _ = _sweep(d)
        tg = [t for t in per_target(rows, **{**opts, "n_boot": 0}) if t["reached"] and t["drop"] is not None]
        if tg:
            ax.scatter([t["n_tokens"] for t in tg], [t["drop"] for t in tg], marker=markers[i % len(markers)], s=36,
                       alpha=0.8, label=f"{rows[0]['model']} · {rows[0]['task']}")
    ax.axhline(0.0, color="grey", lw=0.5)
    _length_axis(ax, "accuracy drop of the best F1≥thr prompt vs γ = 0", "waywardness by model and task")
    fig.tight_layout()
    return save_figure(fig, path)
