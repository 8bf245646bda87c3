"""`make demo`: the offline tour on the default model — train an SST-2 prompt (96 steps, 8 checkpoints), evaluate
it on the full test set, show its nearest-token projection, describe every other checkpoint, explain and report it.

    python -m softscope.cli.demo --out runs/demo [--steps 96] [--fresh]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import click

from ..engine.config import TrainConfig
from ..engine.errors import SoftscopeError


def show_training(res, adapter, final_eval: str) -> None:
    """The accuracy-per-checkpoint table and the final prompt's projection (shared with `softscope train`)."""
    from ..engine.projection import project
    from ..engine.stats import fmt_ci, interval_of

    click.echo(f"\n{'step':>6}  accuracy [95% interval] on n examples")
    for c in res.checkpoints:
        n = c.get("examples")
        click.echo(f"{c['step']:>6}  {fmt_ci(c['accuracy'], c.get('ci95'))}" + (f"  n={n}" if n else ""))
    if res.final_accuracy is not None:
        n, total = res.final_examples, res.test_total
        which = "full" if n >= total else f"{n} of {total}"
        ci = interval_of(res.final_accuracy, n) if n else None
        click.echo(f"final test accuracy ({which}): {fmt_ci(res.final_accuracy, ci, 4)}" + (f", n={n}" if n else ""))
    if res.truncated:
        t = res.truncated
        click.echo(f"truncated to max length {t['max_length']}: {t['train']} of the training inputs, "
                   f"{t['test']} of {res.final_examples} final test inputs")
    proj = project(adapter, res.prompt.tensor, "l2", top_k=3)
    click.echo(f"nearest tokens (l2): {proj.text!r}")
    for i, top in enumerate(proj.top):
        click.echo(f"  p{i}: " + "  ".join(f"{t['token']!r} ({t['score']:.2f})" for t in top))
    click.echo(f"run directory: {res.run_dir}")


def describe_stage(run_dir: Path, adapter) -> None:
    """InSPEcT over every other checkpoint on a coarse grid (every 6th layer, 2 target prompts, 24 new tokens)."""
    from .describe import show_summary
    from ..methods.describe import DescribeConfig, describe

    click.echo("\n== describe (InSPEcT): the model writes what each checkpoint's prompt means ==")
    steps = sorted(int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*.safetensors"))
    every_other = ",".join(str(s) for s in steps[::2] + ([steps[-1]] if len(steps) % 2 == 0 else []))
    res = describe(run_dir, DescribeConfig(layers="every:6", n_targets=2, max_new_tokens=24, checkpoints=every_other),
                   adapter=adapter)
    show_summary(res)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="softscope offline demo")
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--fresh", action="store_true", help="delete an earlier demo run first")
    args = ap.parse_args(argv)
    t0 = time.time()
    from ..engine.training import load_model_for, train

    cfg = TrainConfig(task="sst2", tokens=7, steps=args.steps, checkpoint_every=max(1, args.steps // 8), lr=3e-2,
                      eval_examples=200, final_eval="full", seed=0)
    out = Path(args.out)
    if out.exists() and (args.fresh or (out / "state.safetensors").exists()):
        if (out / "train_summary.json").exists() and not args.fresh:
            click.echo(f"{out} already holds a finished demo run: reusing it (pass --fresh to retrain)")
        else:
            shutil.rmtree(out)
    try:
        adapter = load_model_for(cfg)
        click.echo(f"model {adapter.name}: {adapter.n_layers} layers, width {adapter.width}")
        if (out / "train_summary.json").exists():
            from ..engine.prompts import SoftPrompt
            from ..engine.runs import read_json
            from ..engine.training import TrainResult

            s = read_json(out / "train_summary.json")
            res = TrainResult(run_dir=out, prompt=SoftPrompt.load(out / "prompt.safetensors"),
                              checkpoints=s["checkpoints"], final_accuracy=s["final_accuracy"],
                              final_examples=s.get("final_eval_examples"))
        else:
            res = train(cfg, out, adapter=adapter)
        show_training(res, adapter, cfg.final_eval)
        describe_stage(out, adapter)
        from ..methods import explain
        from ..report import html as report

        explain.demo_step(out, adapter)  # projection, best InSPEcT description, PEZ reading — each scored
        report.demo_step(out, adapter)  # the self-contained HTML page
    except SoftscopeError as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(2)
    click.echo(f"\ndemo finished in {time.time() - t0:.0f} s; run directory: {out.resolve()}")


if __name__ == "__main__":
    main()
