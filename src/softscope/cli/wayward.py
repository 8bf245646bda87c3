"""`softscope wayward` (a γ sweep over target texts) and `softscope wayward-compare` (sweeps side by side)."""

from __future__ import annotations

from contextlib import nullcontext

import click

from ..engine.models import load_model_for
from ..engine.runs import Run, register_kind
from ..methods.wayward import WaywardConfig, compare, compare_plot, compare_table, run_wayward, target_table
from .options import build_config, config_options, echo_json, resumed

COMPARE_KIND = register_kind("wayward-compare")


@click.command("wayward")
@config_options(WaywardConfig, exclude=("tokens", "target", "checkpoint_every", "eval_examples", "final_eval"))
@click.option("--target", "target", multiple=True, help="a target text (repeat for several)")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory to write")
@click.option("--resume", is_flag=True, help="continue a killed sweep (finished target × γ rows are kept); "
              "--max-targets may grow it")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def wayward_cmd(out, resume, as_json, **kw):
    """Train prompts that solve a task while their projection reads as a target text (Khashabi et al. 2022).

    \b
    For every target t: prompts of len(tokens(t)) virtual tokens on CE + γ·Σ‖p_i − e(t_i)‖²/n, one per γ,
    projected by Euclidean nearest neighbour; records accuracy, prompt-F1 vs t and the distance.
      softscope wayward --task sst2 --protocol cpu --out runs/wayward-cpu-sst2     # early-stopped, with intervals
      softscope wayward --task sst2 --protocol paper --out runs/wayward-paper-sst2 # the authors' settings (GPU)
      softscope wayward --task sst2 --target "Answer the question." --gamma 0,1e-3,1e-2 --steps 50 --out runs/w
    """
    kw["target"] = list(kw.get("target") or []) or None
    cfg = build_config(WaywardConfig, kw)
    if resume:  # the sweep's own settings (rows must stay comparable); --max-targets may grow it
        cfg = resumed(WaywardConfig, out, cfg)
    s = run_wayward(cfg, out, resume=resume, adapter=load_model_for(cfg))
    if as_json:
        return echo_json(s)
    stop = f"≤ {s['steps']} steps, early-stopped on {s['dev_examples']} dev examples" if cfg.patience else \
        f"{s['steps']} steps"
    seeds = f" · seeds {','.join(map(str, s['train_seeds']))} averaged" if len(s["train_seeds"]) > 1 else ""
    click.echo(f"\n{s['model']} · {s['task']} · {s['targets']} targets · γ {', '.join(f'{g:g}' for g in cfg.gamma)}"
               f" · {stop}{seeds} · accuracy on {s['test_examples']} test examples · selection {s['selection']}")
    click.echo(f"{'γ':>8} {'accuracy':>9} {'F1':>6} {'F1≥thr':>7} {'distance':>9}")
    for g, b in s["by_gamma"].items():
        click.echo(f"{g:>8} {b['mean_accuracy']:>9.3f} {b['mean_f1']:>6.2f} {100 * b['share_f1_at_threshold']:>6.0f}%"
                   f" {b['mean_distance']:>9.3f}")
    click.echo(f"\n{'target':<40} {'n':>3} {'e(t)':>6} {'acc γ=0':>8} {'best γ':>7} {'F1':>5} {'acc':>6} {'drop':>6}"
               f"  {'95% CI':<17} within")
    for t in s["per_target"]:
        best = (f"{t['best_gamma']:>7g} {t['best_f1']:>5.2f} {t['best_accuracy']:>6.3f} {t['drop']:>+6.3f}"
                if t["drop"] is not None else f"{'–':>7} {t['max_f1']:>5.2f} {'–':>6} {'–':>6}")
        ci = f"[{t['drop_ci95'][0]:+.3f}, {t['drop_ci95'][1]:+.3f}]" if t["drop_ci95"] else "–"
        start = "–" if t["acc_start"] is None else f"{t['acc_start']:.3f}"
        click.echo(f"{t['target'][:40]:<40} {t['n_tokens']:>3} {start:>6} {t['acc_gamma0']:>8.3f} {best}  {ci:<17} "
                   + ("yes" if t["within"] else "no") + ("" if t["reached"] else " (F1 not reached)")
                   + ("" if t["baseline_ok"] else " (γ = 0 below baseline)"))
    pct = (lambda x: "–" if x is None else f"{100 * x:.0f}%")
    ref = "the best accuracy" if s["selection"] == "paper" else "γ = 0"
    click.echo(f"\nF1 over {s['f1_threshold']:g} reached for {pct(s['share_reached'])} of targets; within "
               f"{100 * s['within']:g} points of {ref}: {pct(s['share_within'])}"
               + (" (whole 95% interval)" if any(t["within_basis"] == "ci95" for t in s["per_target"]) else "")
               + "; mean drop " + ("–" if s["mean_drop"] is None else f"{s['mean_drop']:+.3f}")
               + f"; significant drops: {s['significant_drops']}; compute {s['compute_seconds']:.0f} s")
    if s["below_baseline"]:
        click.echo(f"γ = 0 below --baseline-min {s['baseline_min']:g} (not counted): {', '.join(s['below_baseline'])}")
    click.echo(f"run directory: {out}")


@click.command("wayward-compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, help="also write compare.json, compare.md and compare_drop_vs_length.png here")
@click.option("--per-target", is_flag=True, help="also print one row per target (accuracy / F1 at every γ)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def wayward_compare_cmd(run_dirs, out, per_target, as_json):
    """Headline figures of several wayward sweeps (e.g. two models on one task) as one table."""
    with Run.open(out, COMPARE_KIND) if out else nullcontext() as run:
        rows = compare(list(run_dirs))
        table = compare_table(rows)
        targets = target_table(list(run_dirs)) if out or per_target else ""
        if run:
            run.write_json("compare.json", rows)
            run.write_text("compare.md", table + "\n\n" + targets + "\n")
            compare_plot(list(run_dirs), run.file("compare_drop_vs_length.png"))
    if as_json:
        return echo_json(rows)
    click.echo(table)
    if per_target:
        click.echo("\n" + targets)


COMMANDS = [wayward_cmd, wayward_compare_cmd]
