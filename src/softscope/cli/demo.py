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
from ..engine.models import load_model_for
from ..engine.prompts import SoftPrompt
from ..engine.runs import read_json
from ..engine.training import TrainResult, train
from ..methods.describe import DescribeConfig, describe
from ..methods.explain import ExplainConfig, explain, explain_table
from ..report.html import build_report
from .core import show_training
from .describe import show_summary


def describe_stage(run_dir: Path, adapter) -> None:
    """InSPEcT over every other checkpoint on a coarse grid (every 6th layer, 2 target prompts, 24 new tokens)."""
    click.echo("\n== describe (InSPEcT): the model writes what each checkpoint's prompt means ==")
    steps = sorted(int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*.safetensors"))
    every_other = ",".join(str(s) for s in steps[::2] + ([steps[-1]] if len(steps) % 2 == 0 else []))
    res = describe(run_dir, DescribeConfig(layers="every:6", n_targets=2, max_new_tokens=24, checkpoints=every_other),
                   adapter=adapter)
    show_summary(res)


def explain_stage(run_dir: Path, adapter) -> None:
    """The default (cheap) explain of the run's final prompt: projection, best InSPEcT description, PEZ, each scored."""
    click.echo("\n== explain: the final prompt read three ways ==")
    res = explain(run_dir, ExplainConfig(), adapter=adapter)
    click.echo(explain_table(res.summary))
    click.echo(f"written to {res.out_dir}")


def report_stage(run_dir: Path) -> None:
    """The run's self-contained HTML report."""
    path = build_report(run_dir)
    click.echo(f"\nreport: {path.resolve()} ({path.stat().st_size / 1024:.0f} KB, open it in any browser)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="softscope offline demo")
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--fresh", action="store_true", help="delete an earlier demo run first")
    args = ap.parse_args(argv)
    t0 = time.time()
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
            s = read_json(out / "train_summary.json")
            res = TrainResult(run_dir=out, prompt=SoftPrompt.load(out / "prompt.safetensors"),
                              checkpoints=s["checkpoints"], final_accuracy=s["final_accuracy"],
                              final_examples=s.get("final_eval_examples"))
        else:
            res = train(cfg, out, adapter=adapter)
        show_training(res, adapter, cfg.final_eval)
        describe_stage(out, adapter)
        explain_stage(out, adapter)  # projection, best InSPEcT description, PEZ reading — each scored
        report_stage(out)  # the self-contained HTML page
    except SoftscopeError as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(2)
    click.echo(f"\ndemo finished in {time.time() - t0:.0f} s; run directory: {out.resolve()}")
    click.echo(f"explore it live (heatmaps, your own target prompts, streamed descriptions):\n"
               f"  softscope serve {args.out}")


if __name__ == "__main__":
    main()
