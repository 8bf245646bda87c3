"""Core commands: models, tasks, train, eval, project, export."""

from __future__ import annotations

from pathlib import Path

import click

from ..engine.carry import model_for, of, resolve
from ..engine.config import ModelOptions, ReadOptions, TrainConfig
from ..engine.models import DEFAULT_MODEL, cache_dir, list_models, load_model, load_model_for
from ..engine.projection import check_options, movement, project
from ..engine.prompts import SoftPrompt, export_notes, export_peft
from ..engine.runs import Run, fingerprint, read_json, register_kind
from ..engine.stats import fmt_ci, interval_of
from ..engine.tasks import data_dir as find_dir, list_tasks
from ..engine.training import KIND as TRAIN, evaluate, train
from ..records import EvalSummary
from .options import build_config, config_options, echo_json, resumed

EVAL_KIND = register_kind("eval")
EXPORT_KIND = register_kind("export", legacy_marker=("adapter_config.json",))


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def models_cmd(as_json):
    """List the packaged offline models (and whether they are installed and cached)."""
    rows = list_models()
    if as_json:
        return echo_json(rows)
    click.echo(f"{'name':<14} {'installed':<10} {'cached':<7} description")
    for r in rows:
        click.echo(f"{r['name']:<14} {str(r['installed']):<10} {str(r['cached']):<7} {r['description']}")
        if not r["installed"]:
            click.echo(f"{'':<14} install: {r['install']}")
    click.echo(f"\nAny Hugging Face causal LM id or local folder works too. Cache: {cache_dir()}")


@click.command("tasks")
@click.option("--data-dir", default=None, help="data folder (default: $SOFTSCOPE_DATA, then ../shared/data)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def tasks_cmd(data_dir, as_json):
    """List the built-in tasks (classes, label words, template) and where their data is found."""
    rows = list_tasks()
    if as_json:
        return echo_json(rows)
    click.echo(f"data folder: {find_dir(data_dir) or 'none found (Hub will be tried)'}")
    for r in rows:
        click.echo(f"{r['name']:<8} {', '.join(r['classes'])}   template: {r['template']!r}")


def _load_prompt_and_model(prompt_path: str, opts: dict):
    """The prompt and its model (the one it was trained on unless --model names another); the override if any."""
    prompt = SoftPrompt.load(prompt_path)
    name, override = model_for(prompt, opts.get("model"))
    adapter = load_model(name or DEFAULT_MODEL, device=opts.get("device", "auto"), dtype=opts.get("dtype", "auto"),
                         trust_remote_code=opts.get("trust_remote_code", False))
    prompt.check_width(adapter.width, adapter.name)
    return prompt, adapter, override


def model_options(f):
    """--model (default: the prompt's own), --device, --dtype, --trust-remote-code for commands that read a prompt."""
    f = config_options(ModelOptions, exclude=("model",))(f)
    return click.option("--model", default=None,
                        help="model (default: the one the prompt was trained on): alias, local folder or hub id")(f)


def show_training(res, adapter, final_eval: str) -> None:
    """The accuracy-per-checkpoint table and the final prompt's projection (`softscope train` and the demo)."""
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


@click.command("train")
@config_options(TrainConfig)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory to write")
@click.option("--resume", is_flag=True, help="continue a killed run from its last checkpoint (bit-identical result)")
def train_cmd(out, resume, **kw):
    """Train a soft prompt with checkpoints; print accuracy per checkpoint and the final projection."""
    cfg = build_config(TrainConfig, kw)
    if resume:  # the run's own settings; an option given here that differs is refused by the fingerprint check
        cfg = resumed(TrainConfig, out, cfg)
    with Run.open(out, TRAIN, fingerprint(cfg), resume=resume) as run:  # lock and check before loading the model
        adapter = load_model_for(cfg)
        res = train(cfg, run, adapter=adapter)
    show_training(res, adapter, cfg.final_eval)


@click.command("eval")
@click.argument("prompt_path", type=click.Path())
@config_options(ReadOptions)
@model_options
@click.option("--out", default=None, help="also write eval_summary.json and eval.jsonl into this folder")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def eval_cmd(prompt_path, out, as_json, **kw):
    """Score a saved prompt (file, run dir or PEFT adapter dir) on its own task's test set, with the settings it
    was trained with (task, template, label words, max length, placement, model); options override them."""
    from contextlib import nullcontext

    with Run.open(out, EVAL_KIND) if out else nullcontext() as run:  # lock and check the folder before any work
        ropts = build_config(ReadOptions, kw)
        prompt, adapter, model_override = _load_prompt_and_model(prompt_path, kw)
        reading = resolve(prompt, ropts.given(), ropts.allow_other_task, what=str(prompt_path))
        reading.overrides = model_override + reading.overrides
        task = reading.task
        res = evaluate(prompt, adapter=adapter, scorer=reading.scorer(adapter))
        summary = EvalSummary.of({
            "prompt": str(prompt_path), "task": task.name, "model": adapter.name, "accuracy": res["accuracy"],
            "examples": res["examples"], "test_total": reading.test_total, "ci95": res["ci95"], "interval": "wilson",
            "recorded_accuracy": prompt.accuracy, "per_class_recall": res["per_class_recall"],
            "truncated": res["truncated"], **reading.to_dict()})
        if run:
            run.write_config(ropts, prompt=str(Path(prompt_path).resolve()), model=adapter.name, **reading.to_dict())
            run.write_jsonl("eval.jsonl", [
                {"i": i, "text": e.text, "text_b": e.text_b, "gold": task.classes[g], "pred": task.classes[p],
                 "logprobs": lp} for i, (e, g, p, lp) in
                enumerate(zip(task.test, res["gold"], res["predictions"], res["logprobs"]))])
            run.write_json("eval_summary.json", summary)
    if as_json:
        return echo_json(summary)
    for line in reading.notes():
        click.echo(line)
    click.echo(f"{task.name}: accuracy {fmt_ci(res['accuracy'], res['ci95'], 4)} on "
               f"{of(res['examples'], reading.test_total)} test examples (95% Wilson interval)"
               + (f" (recorded at training: {prompt.accuracy:.4f})" if prompt.accuracy is not None and not
                  reading.overrides else ""))
    click.echo(f"truncated: {res['truncated']} of {res['examples']} inputs cut to fit max length {res['max_length']}")
    for c, r in res["per_class_recall"].items():
        click.echo(f"  recall {c:<14} {r:.3f}" if r is not None else f"  recall {c:<14} n/a")


@click.command("project")
@click.argument("prompt_path", type=click.Path())
@click.option("--metric", type=click.Choice(["l2", "cos", "dot"]), default="l2", show_default=True,
              help="distance: Euclidean, cosine or raw dot product")
@click.option("--top-k", default=5, show_default=True, help="neighbours per virtual token")
@model_options
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def project_cmd(prompt_path, metric, top_k, as_json, **kw):
    """Nearest vocabulary tokens of each virtual token, with distances, the decoded string, and how far each
    virtual token moved from its initialisation (a warning when training hardly moved the prompt)."""
    check_options(metric, top_k)
    prompt, adapter, model_override = _load_prompt_and_model(prompt_path, kw)
    proj = project(adapter, prompt.tensor, metric, top_k)
    moved = movement(prompt, prompt_path)
    if as_json:
        return echo_json({"prompt": str(prompt_path), "model": adapter.name, **proj.to_dict(), "movement": moved,
                          "overrides": model_override})
    for o in model_override:
        click.echo(f"override: model = {o['used']!r} (the prompt's: {o['recorded']!r})")
    click.echo(f"{prompt.n_tokens} virtual tokens, {adapter.name}, metric {metric}"
               + ("  (output embeddings untied: input-embedding neighbours)" if proj.untied_output else ""))
    for i, top in enumerate(proj.top):
        d = f"  [moved {moved['relative'][i]:.3f}]" if moved else ""
        click.echo(f"  p{i}: " + "  ".join(f"{t['token']!r} ({t['score']:.3f})" for t in top) + d)
    click.echo(f"decoded: {proj.text!r}")
    if moved is None:
        click.echo("movement: unknown (no initial prompt recorded with this prompt)")
    elif moved["warning"]:
        click.echo(f"warning: {moved['warning']}")


@click.command("export")
@click.argument("prompt_path", type=click.Path())
@click.option("--peft", "peft_dir", required=True, type=click.Path(file_okay=False), help="write a PEFT adapter folder here")
@click.option("--base-model", default=None, help="base_model_name_or_path to record (default: the prompt's model)")
def export_cmd(prompt_path, peft_dir, base_model):
    """Export a prompt as a PEFT prompt-tuning adapter (adapter_config.json + adapter_model.safetensors)."""
    with Run.open(peft_dir, EXPORT_KIND) as run:  # never into a run folder: readers would take the adapter for its prompt
        prompt = SoftPrompt.load(prompt_path)
        run.record()
        out = export_peft(prompt, run.path, base_model)
    cfg = read_json(out / "adapter_config.json")
    click.echo(f"PEFT adapter written to {out} (base model: {cfg.get('base_model_name_or_path')})")
    for note in export_notes(prompt, base_model):
        click.echo(f"note: {note}")


COMMANDS = [models_cmd, tasks_cmd, train_cmd, eval_cmd, project_cmd, export_cmd]
