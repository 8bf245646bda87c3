"""`softscope bias make-data` and `softscope bias run`: plant a feature, train on it, see if descriptions name it."""

from __future__ import annotations

import click

from ..methods.bias import BiasRunConfig, MakeDataConfig, make_data, run
from .options import build_config, config_options, echo_json, fmt_num


@click.group("bias")
def bias_group():
    """Bias probe: does an elaborated InSPEcT name a feature a soft prompt learned from biased data?"""


@bias_group.command("make-data")
@config_options(MakeDataConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder to write")
def make_data_cmd(out, **kw):
    """Write a biased train split (train.jsonl), the clean test split and its counterfactual copies."""
    s = make_data(build_config(MakeDataConfig, kw), out)
    click.echo(f"{s['task']}: {s['feature']} with strength {s['strength']:g} towards {s['favoured']!r}")
    for c, (k, n) in s["counts"].items():
        click.echo(f"  {c:<14} {k:>5} / {n:<5} examples carry it ({s['shares'][c]:.3f})")
    if s["dropped_with_feature"]:
        click.echo(f"  {s['dropped_with_feature']} training examples already contained it and were left out")
    click.echo(f"written to {out}: train.jsonl ({s['train_examples']}), test.jsonl ({s['test_examples']}, clean), "
               "counterfactuals.jsonl, make_data_summary.json")


@bias_group.command("run")
@config_options(BiasRunConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory (resumable)")
@click.option("--json", "as_json", is_flag=True, help="print bias_summary.json instead of a table")
def run_cmd(out, as_json, **kw):
    """Train one prompt per strength x seed on biased data; biased-prediction rate vs bias-mention rate."""
    s = run(build_config(BiasRunConfig, kw), out)
    if as_json:
        return echo_json(s)
    click.echo(f"{s['task']} · feature {s['feature']} → {s['favoured']!r} · control {s['control']} · {s['prompts']} prompts")
    click.echo(f"{'strength':>8} {'n':>2} | {'acc':>5} | {'biased':>6} {'feat':>5} {'ctrl':>5} | "
               f"{'mention':>7} {'string':>6} {'embed':>5} {'ctrl':>5}")
    for p in s["per_strength"]:
        click.echo(f"{p['strength']:>8.2f} {p['prompts']:>2} | {fmt_num(p['accuracy'])} | "
                   f"{fmt_num(p['biased_prediction_rate'], '+6.3f')} {fmt_num(p['feature_flip_rate'])} "
                   f"{fmt_num(p['control_flip_rate'])} | {fmt_num(p['mention_rate'], '7.3f')} "
                   f"{fmt_num(p['mention_rate_string'], '6.3f')} {fmt_num(p['mention_rate_embedding'])} "
                   f"{fmt_num(p['control_mention_rate'])}")
    pc = s.get("positive_control")
    if pc is not None:
        click.echo(f"{'positive control':>17} | {fmt_num(pc['accuracy'])} | "
                   f"{fmt_num(pc['biased_prediction_rate'], '+6.3f')} {fmt_num(pc['feature_flip_rate'])} "
                   f"{fmt_num(pc['control_flip_rate'])} | {fmt_num(pc['mention_rate'], '7.3f')} "
                   f"{fmt_num(pc['mention_rate_string'], '6.3f')} {fmt_num(pc['mention_rate_embedding'])} "
                   f"{fmt_num(pc['control_mention_rate'])}   e({pc['text']!r})")
    for key, label in (("mention_vs_biased_prediction", "mention rate vs biased-prediction rate"),
                       ("biased_prediction_vs_strength", "biased-prediction rate vs strength"),
                       ("mention_vs_strength", "mention rate vs strength")):
        c = s["correlation"][key]
        click.echo(f"{label}: Pearson {fmt_num(c['pearson'])} (p={fmt_num(c['pearson_p'], '.3g')}), "
                   f"Spearman {fmt_num(c['spearman'])} (p={fmt_num(c['spearman_p'], '.3g')}), n={c['n']}")
    click.echo(f"written to {out} ({s['seconds']:.0f} s): bias.jsonl, bias_summary.json, "
               + ", ".join(p.split('/')[-1] for p in s["plots"]))


COMMANDS = [bias_group]
