"""CLI for `interpret`: is a discrete reading of a soft prompt faithful and scrutable (parse → config → API → print)."""

from __future__ import annotations

import click

from ..engine.stats import fmt_ci, fmt_paired
from ..methods.interpret import InterpretConfig, interpret
from .options import build_config, config_options, echo_json


@click.command("interpret")
@click.argument("prompt_path", type=click.Path())
@config_options(InterpretConfig)
@click.option("--out", default=None, type=click.Path(file_okay=False), help="also write interpret_summary.json here")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def interpret_cmd(prompt_path, out, as_json, **kw):
    """Faithfulness and scrutability of a discrete reading of a soft prompt (file, run dir or PEFT dir)."""
    rep = interpret(build_config(InterpretConfig, kw), prompt_path, out)
    if as_json:
        return echo_json(rep)
    f, s, t = rep["faithfulness"], rep["scrutability"], rep["thresholds"]
    for o in rep.get("overrides", []):
        click.echo(f"override: {o['field']} = {o['used']!r} (the prompt's: {o['recorded']!r})")
    click.echo(f"reading ({rep['reading']}): {rep['text']!r}  [{rep['tokens']} tokens"
               + ("" if rep["text_roundtrip"] else "; the text re-tokenises differently: scored by its ids") + "]")
    click.echo(f"faithfulness on {f['examples']} {rep['task']} test examples "
               f"({rep['truncated']} inputs truncated to max length {rep['max_length']}):")
    click.echo(f"  agreement with the soft prompt {fmt_ci(f['agreement'], f['agreement_ci95'])}   (faithful if >= "
               f"{t['min_agreement']:g}: {'yes' if rep['faithful'] else 'no'})")
    click.echo(f"  accuracy soft {fmt_ci(f['prompt_accuracy'], f['prompt_accuracy_ci95'])} / reading "
               f"{fmt_ci(f['reading_accuracy'], f['reading_accuracy_ci95'])}   KL(soft || reading) {f['kl']:.3f}")
    click.echo(f"  accuracy gap soft − reading: {fmt_paired(f['paired'])}")
    click.echo("scrutability:")
    click.echo(f"  perplexity {s['perplexity']:.1f}   dictionary words {s['dictionary_share']:.2f}"
               f"   (scrutable if <= {t['max_perplexity']:g} and >= {t['min_dictionary_share']:g}: "
               f"{'yes' if rep['scrutable'] else 'no'})")
    click.echo(f"interpretable: {'yes' if rep['interpretable'] else 'no'}")


COMMANDS = [interpret_cmd]
