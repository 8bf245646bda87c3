"""CLI for the discrete-prompt searches: `pez` and `rlprompt` weight sweeps (parse → config → API → print)."""

from __future__ import annotations

import click

from ..engine.stats import fmt_ci
from ..methods.pez import PezConfig, pez
from ..methods.rlprompt import RLPromptConfig, rlprompt
from .options import build_config, config_options, echo_json


def _table(rows: list[dict]) -> None:
    click.echo(f"{'weight':>7}  {'test acc [95% interval]':>23}  {'perplexity':>10}  {'step':>5}  prompt")
    for r in rows:
        acc = "-" if r["test_accuracy"] is None else fmt_ci(r["test_accuracy"], r.get("test_ci95"))
        click.echo(f"{r['fluency_weight']:>7g}  {acc:>23}  {r['perplexity']:>10.1f}  "
                   f"{r['selected_step']:>5}  {r['text']!r}")


@click.command("pez")
@config_options(PezConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory (one w-<weight>/ per weight)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def pez_cmd(out, as_json, **kw):
    """PEZ hard prompts (projected gradient, cosine) with the fluency objective, one per --fluency-weight."""
    summary = pez(build_config(PezConfig, kw), out)
    if as_json:
        return echo_json(summary)
    _table(summary["runs"])
    click.echo(f"run directory: {out}  (pez_curves.png: held-out accuracy per step)")


@click.command("rlprompt")
@config_options(RLPromptConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory (one w-<weight>/ per weight)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def rlprompt_cmd(out, as_json, **kw):
    """RLPrompt (soft Q-learning of an MLP-on-LM policy) with the fluency reward, one per --fluency-weight."""
    summary = rlprompt(build_config(RLPromptConfig, kw), out)
    if as_json:
        return echo_json(summary)
    _table(summary["runs"])
    click.echo(f"run directory: {out}  (rlprompt_curves.png, rlprompt_rewards.png)")


COMMANDS = [pez_cmd, rlprompt_cmd]
