"""report + explain on a real (tiny-model) run dir written by the real writers: train → describe → explain → report."""

import base64
import json
import io
import re

import pytest

from softscope.engine.errors import SoftscopeError
from softscope.report.html import build_report, report_sections
from softscope.report.parts import fmt
from softscope.engine.runs import read_json, read_jsonl, write_json

from conftest import make_adapter, needs_default_model, tiny_task

REFS = ["is the movie review positive or negative", "classify the sentiment of the review"]


def make_run(root):
    """A finished tiny training run with InSPEcT descriptions of every checkpoint and an explain reading."""
    from softscope.engine.config import TrainConfig
    from softscope.methods.describe import DescribeConfig, describe
    from softscope.methods.explain import ExplainConfig, explain
    from softscope.engine.training import train

    tiny, task = make_adapter("llama"), tiny_task()
    run = root / "run"
    train(TrainConfig(task="tiny", tokens=3, steps=6, batch_size=4, lr=0.05, checkpoint_every=2, eval_examples=0,
                      final_eval="full", device="cpu"), run, adapter=tiny, task=task, progress=False)
    describe(run, DescribeConfig(layers="band:1-2", n_targets=2, max_new_tokens=4, classes=list(task.classes),
                                 references=REFS, task="tiny"), adapter=tiny, progress=False)
    explain(run, ExplainConfig(examples=12, pez_steps=2, pez_batch_size=4), adapter=tiny, task=task, progress=False)
    return run, tiny, task


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("report"))


def test_explain_writes_three_measured_readings(demo_run):
    run, _, _ = demo_run
    s = read_json(run / "explain" / "explain_summary.json")
    assert [r["method"] for r in s["readings"]] == ["projection", "inspect", "pez"]
    assert s["examples"] == 12 and s["soft_prompt"]["n_tokens"] == 3
    for r in s["readings"]:
        assert r["ids"] and r["text"], r
        f, sc = r["faithfulness"], r["scrutability"]
        assert 0 <= f["agreement"] <= 1 and f["kl"] >= -1e-6 and sc["perplexity"] > 1
        assert f["prompt_accuracy"] == pytest.approx(s["soft_prompt"]["accuracy"])
    # the InSPEcT reading is the best-similarity description of the run's own describe rows at the final step
    rows = [r for r in read_jsonl(run / "describe" / "descriptions.jsonl") if r["step"] == 6]
    best = max(r["similarity"] for r in rows)
    assert s["readings"][1]["text"] in {r["cut"] for r in rows if r["similarity"] == best}
    assert len(read_jsonl(run / "explain" / "readings.jsonl")) == 3


def test_report_sections_and_numbers(demo_run):
    run, _, _ = demo_run
    path = build_report(run)
    page = path.read_text()
    assert report_sections(path)[:4] == ["Run", "Training", "Explain: one soft prompt, read three ways",
                                         "InSPEcT descriptions"]
    summ = read_json(run / "train_summary.json")
    assert fmt(summ["final_accuracy"]) in page
    for ck in summ["checkpoints"]:  # the checkpoint table holds every checkpoint with its accuracy
        assert re.search(rf"<td>{ck['step']}</td><td>{re.escape(fmt(ck['accuracy']))}</td>", page)
    ex = read_json(run / "explain" / "explain_summary.json")
    for r in ex["readings"]:
        assert fmt(r["faithfulness"]["agreement"]) in page and fmt(r["scrutability"]["perplexity"]) in page
    # heatmap: one hover cell per layer pair of the last checkpoint, each titled with its texts
    cells = re.findall(r'<td class="cell"[^>]*title="([^"]*)"', page)
    assert len(cells) == 4  # band:1-2 → 2 × 2 pairs
    last = [r for r in read_jsonl(run / "describe" / "descriptions.jsonl") if r["step"] == 6]
    import html

    titles = [html.unescape(t) for t in cells]
    assert all(t.startswith("source layer") for t in titles)
    assert any(r["cut"] and r["cut"] in t for r in last for t in titles)
    # describe's own PNGs are embedded, and every embedded PNG decodes
    from PIL import Image

    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) >= 3  # training curves + describe's heatmap + accuracy-vs-score
    for b in imgs:
        assert Image.open(io.BytesIO(base64.b64decode(b))).size[0] > 100
    # self-contained: nothing to fetch
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page and "<script src" not in page


def test_report_tolerates_unknown_and_partial_runs(tmp_path):
    with pytest.raises(SoftscopeError, match="nothing softscope can report"):
        build_report(tmp_path)
    with pytest.raises(SoftscopeError, match="not a run directory"):
        build_report(tmp_path / "missing")
    # a method summary with fields the report has never seen, and a torn metrics file: sections still render
    write_json(tmp_path / "wayward_summary.json", {"model": "m", "new_field": {"x": 1}})
    (tmp_path / "wayward.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"gamma": 0.0, "f1": 0.2, "accuracy": 0.81, "unknown": 1}, {"gamma": 0.01, "f1": 0.95, "accuracy": 0.8}]))
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "event": "train", "loss": 2.0}\n{"step": 2, "ev')
    page = build_report(tmp_path).read_text()
    assert "Prompt waywardness" in page and "0.950" in page and "data:image/png;base64" in page


def test_cli_explain_checkpoint_and_report(demo_run, tiny_task_file, monkeypatch, capsys):
    from softscope import cli

    run, tiny, _ = demo_run
    monkeypatch.setattr("softscope.methods.explain.load_model", lambda *a, **k: tiny)
    # the prompt was trained on an in-code task: the file gives its data, --template its template
    cli.main(["explain", str(run / "checkpoints" / "step-00004.safetensors"), "--task", str(tiny_task_file),
              "--template", "Sentence : {text} Label :", "--readings", "projection,pez", "--pez-steps", "2", "--pez-batch-size", "4", "--examples", "8"])
    out = capsys.readouterr().out
    assert "projection (cos)" in out and "PEZ (2 steps)" in out and "report:" in out
    s = read_json(run / "explain-step-00004" / "explain_summary.json")
    assert s["soft_prompt"]["step"] == 4 and len(s["readings"]) == 2
    cli.main(["report", str(run), "--out", str(run / "r.html")])
    out = capsys.readouterr().out
    assert "Training" in out and "InSPEcT descriptions" in out
    page = (run / "r.html").read_text()
    assert "explain-step-00004" in page  # both explain runs appear
    with pytest.raises(SystemExit) as e:
        cli.main(["explain", str(run), "--readings", "nonsense"])
    assert e.value.code == 2


def test_method_sections_from_real_writers(tmp_path, monkeypatch):
    """wayward, PEZ, RLPrompt and bias runs on the tiny model: each gets its section with its numbers and plots."""
    import softscope.methods.bias as bias
    from softscope.methods.wayward import WaywardConfig, run_wayward

    tiny, task = make_adapter("llama"), tiny_task()
    run_wayward(WaywardConfig(device="cpu", steps=2, batch_size=4, lr=5e-2, gamma=[0, 5], test_examples=8,
                              target=["the movie was great", "a bad film"], template="task"),
                tmp_path / "w", adapter=tiny, task=task, progress=False)
    page = build_report(tmp_path / "w").read_text()
    assert report_sections(tmp_path / "w" / "report.html")[:2] == ["Run", "Prompt waywardness"]
    for r in read_jsonl(tmp_path / "w" / "wayward.jsonl"):
        assert fmt(r["f1"]) in page and fmt(r["accuracy"]) in page
    assert "f1_vs_accuracy.png" in page  # the method's own plot, embedded

    pez = pytest.importorskip("softscope.methods.pez")
    pez.pez(pez.PezConfig(tokens=3, steps=2, batch_size=4, checkpoint_every=1, eval_examples=0, holdout=6,
                          test_examples=4, fluency_weight=[0.0, 0.5]), tmp_path / "p", adapter=tiny, task=task,
            progress=False)
    page = build_report(tmp_path / "p").read_text()
    assert "PEZ hard prompts" in page and "PEZ trade-off" in page
    for r in read_jsonl(tmp_path / "p" / "pez.jsonl"):
        assert html_text(r["text"]) in page and fmt(r["perplexity"]) in page

    rl = pytest.importorskip("softscope.methods.rlprompt")
    rl.rlprompt(rl.RLPromptConfig(tokens=2, steps=2, prompts_per_step=3, batch_size=2, hidden=16, top_k=8,
                                  eval_every=2, eval_examples=4, holdout=6, test_examples=4, fluency_weight=[0, 1]),
                tmp_path / "rl", adapter=tiny, task=task, progress=False)
    page = build_report(tmp_path / "rl").read_text()
    assert "RLPrompt trade-off" in page and "rlprompt_rewards.png" in page
    for r in read_jsonl(tmp_path / "rl" / "rlprompt.jsonl"):
        assert fmt(r["test_accuracy"]) in page

    from softscope.methods.tradeoff import TradeoffConfig, tradeoff

    tradeoff(TradeoffConfig(examples=6, soft_tokens=3, soft_steps=2, pez_weights=[0], pez_tokens=3, pez_steps=2,
                            rl_weights=[0], rl_tokens=2, rl_steps=2, rl_prompts_per_step=2, rl_batch_size=2,
                            selection_examples=4, holdout=6), tmp_path / "t", adapter=tiny, task=task, progress=False)
    path = build_report(tmp_path / "t")
    page = path.read_text()
    assert {"PEZ / RLPrompt trade-off", "PEZ hard prompts", "RLPrompt discrete prompts"} <= set(report_sections(path))
    for r in read_json(tmp_path / "t" / "tradeoff_summary.json")["rows"]:
        assert html_text(r["method"]) in page and fmt(r["accuracy"]) in page
    assert "tradeoff_perplexity.png" in page

    monkeypatch.setattr(bias.features, "load_base_task", lambda name, data_dir: tiny_task(24, 12))
    bias.run(bias.BiasRunConfig(model="tiny", task="tiny", feature="word:Spielberg", favoured="positive",
                                strengths=[0.0, 1.0], seeds=1, train_examples=16, tokens=2, steps=1, batch_size=4,
                                heldout=8, layers="0:1", pool="elaborated", n_targets=1, demos=2, max_new_tokens=3),
             tmp_path / "b", adapter=tiny, progress=False)
    path = build_report(tmp_path / "b")
    page = path.read_text()
    assert "Bias probe" in report_sections(path) and "InSPEcT descriptions" not in report_sections(path)
    for r in read_jsonl(tmp_path / "b" / "bias.jsonl"):
        assert fmt(r["mention_rate"]) in page and fmt(r["biased_prediction_rate"]) in page
    assert "per_strength" in page and "mention_vs_biased_prediction" in page


def html_text(s):
    import html

    return html.escape(s, quote=True)


@needs_default_model
def test_explain_default_model_projection(tmp_path):
    """On the packaged model: the prompt's own model and task are found from its metadata; a prompt made of real
    token embeddings reads back as those tokens and agrees with itself."""
    import torch

    from softscope.methods.explain import ExplainConfig, explain
    from softscope.engine.models import load_model
    from softscope.engine.prompts import SoftPrompt

    a = load_model("smollm2-135m")
    ids = a.encode(" Is this movie review positive or negative?")
    f = tmp_path / "p.safetensors"
    SoftPrompt(tensor=a.embed(torch.tensor(ids)).detach().float(), model="smollm2-135m", task="sst2",
               classes=["negative", "positive"], step=3).save(f)
    s = explain(f, ExplainConfig(readings=["projection"], examples=8), progress=False).summary
    r = s["readings"][0]
    assert r["ids"] == ids and r["faithfulness"]["agreement"] == 1.0 and s["task"] == "sst2"
    assert (tmp_path / "p-explain" / "explain_summary.json").exists()
