"""interpret: a prompt is perfectly faithful to itself; perplexity and dictionary share against direct computations."""

import dataclasses
import math

import pytest
import torch

from conftest import needs_default_model, tiny_task
from softscope.engine.errors import SoftscopeError
from softscope.methods.interpret import (InterpretConfig, dictionary_share, faithfulness, interpret, interpret_reading,
                                 scrutability)
from softscope.engine.prompts import SoftPrompt
from softscope.engine.stats import wilson_interval
from softscope.methods.tradeoff import oddness


def test_prompt_is_perfectly_faithful_to_itself(tiny):
    task = tiny_task()
    ids = tiny.encode("what is the movie")
    sp = SoftPrompt(tensor=tiny.embed(torch.tensor(ids)).detach(), classes=task.classes)
    rep = interpret_reading(tiny, task, sp, ids, n_examples=0)
    f = rep["faithfulness"]
    assert f["agreement"] == 1.0 and f["accuracy_gap"] == 0.0 and f["kl"] == pytest.approx(0.0, abs=1e-6)
    assert f["examples"] == len(task.test) and rep["text_roundtrip"] and rep["faithful"]
    # the same reading given as text, and as 'ids:' / 'text:' strings
    for reading in ("text:what is the movie", "ids:" + ",".join(map(str, ids)), "what is the movie"):
        assert interpret_reading(tiny, task, sp, reading, n_examples=0)["faithfulness"]["agreement"] == 1.0


def test_faithfulness_hand_computed():
    lp_a = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]).log()
    lp_b = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.6, 0.4]]).log()
    gold = torch.tensor([0, 1, 1])
    f = faithfulness(lp_a, lp_b, gold)
    assert f["agreement"] == pytest.approx(2 / 3)
    assert f["prompt_accuracy"] == pytest.approx(2 / 3) and f["reading_accuracy"] == pytest.approx(1 / 3)
    kl_row = 0.2 * math.log(0.2 / 0.6) + 0.8 * math.log(0.8 / 0.4)
    assert f["kl"] == pytest.approx(kl_row / 3, abs=1e-6)
    # prompt right on examples 0, 1; reading right on 0 only: one discordant pair, exact McNemar p = 1
    assert (f["paired"]["a_only"], f["paired"]["b_only"], f["paired"]["p"]) == (1, 0, 1.0)
    assert f["paired"]["test"].startswith("McNemar")
    assert f["agreement_ci95"] == pytest.approx(list(wilson_interval(2, 3)))


def test_perplexity_against_a_direct_computation(tiny_any):
    ids = tiny_any.encode("the movie was great fun")
    seq = torch.tensor([[tiny_any.doc_start_id] + ids])
    with torch.no_grad():
        logits = tiny_any.model(input_ids=seq).logits[0, :-1].float()  # the full model, head and all
    nll = torch.nn.functional.cross_entropy(logits, seq[0, 1:])
    assert scrutability(tiny_any, ids)["perplexity"] == pytest.approx(math.exp(nll.item()), rel=1e-4)


def test_dictionary_share():
    share, bad = dictionary_share("The movie, xqzvw !")
    assert share == pytest.approx(0.5) and bad == ["xqzvw", "!"]
    assert dictionary_share("") == (0.0, [])
    assert dictionary_share("classify this review")[0] == 1.0


def test_oddness_flags_repetition_and_function_words():
    assert oddness("the the the the", [1, 1, 1, 1]) and oddness("of the , and", [1, 2, 3, 4])
    assert oddness("great movie review", [5, 6, 7]) == []


def test_interpret_api_on_a_saved_prompt(tiny, tmp_path, monkeypatch):
    task = tiny_task()
    sp = SoftPrompt(tensor=torch.randn(3, tiny.width) * 0.3, model="tiny", task="tiny", classes=task.classes)
    sp.save(tmp_path / "p.safetensors")
    monkeypatch.setattr("softscope.methods.interpret.load_model", lambda *a, **k: tiny)
    rep = interpret(InterpretConfig(reading="projection:l2", examples=0), tmp_path / "p.safetensors",
                    out=tmp_path / "out", adapter=tiny, task=task)
    assert rep["reading"] == "projection:l2" and rep["tokens"] == 3
    assert 0 <= rep["faithfulness"]["agreement"] <= 1 and rep["scrutability"]["perplexity"] > 1
    assert (tmp_path / "out" / "interpret_summary.json").exists()
    with pytest.raises(SoftscopeError):
        InterpretConfig(reading="nonsense")
    with pytest.raises(SoftscopeError):
        interpret_reading(tiny, task, sp, "pez:" + str(tmp_path))  # not a PEZ run


def test_tradeoff_tiny_run(tiny, tmp_path):
    """The whole sweep on a tiny model: rows for every method and weight, plots, cache reused on a rerun."""
    from softscope.engine.runs import read_json, read_jsonl
    from softscope.methods.tradeoff import TradeoffConfig, tradeoff

    task = tiny_task()
    cfg = TradeoffConfig(examples=6, soft_tokens=3, soft_steps=2, pez_weights=[0, 0.5], pez_tokens=3, pez_steps=2,
                         rl_weights=[0, 1], rl_tokens=2, rl_steps=2, rl_prompts_per_step=2, rl_batch_size=2,
                         selection_examples=4, holdout=6)  # no dev split: a held-out cut of train
    s = tradeoff(cfg, tmp_path, adapter=tiny, task=task, progress=False)
    methods = [(r["method"], r["weight"]) for r in s["rows"]]
    assert methods == [("soft prompt", None), ("projection (cos)", None), ("projection (l2)", None), ("PEZ", 0.0),
                       ("PEZ", 0.5), ("RLPrompt", 0.0), ("RLPrompt", 1.0)]
    assert s["rows"][0]["agreement"] == 1.0 and all(0 <= r["agreement"] <= 1 for r in s["rows"])
    assert len(read_jsonl(tmp_path / "tradeoff.jsonl")) == 7
    assert (tmp_path / "tradeoff_perplexity.png").exists() and (tmp_path / "tradeoff_faithfulness.png").exists()
    assert len(read_json(tmp_path / "scores_cache.json")["rows"]) == 6


@needs_default_model
def test_default_model_reading_of_itself_is_faithful():
    from softscope.engine.models import load_model
    from softscope.engine.tasks import load_task

    a = load_model("smollm2-135m")
    task = load_task("sst2")
    ids = a.encode("What is the sentiment of this movie review?")
    sp = SoftPrompt(tensor=a.embed(torch.tensor(ids)).detach())
    rep = interpret_reading(a, task, sp, "text:What is the sentiment of this movie review?", n_examples=8)
    assert rep["faithfulness"]["agreement"] == 1.0 and rep["faithfulness"]["kl"] == pytest.approx(0, abs=1e-5)
    assert rep["scrutability"]["dictionary_share"] == 1.0 and rep["scrutability"]["perplexity"] < 1000


def test_cli_interpret_prints_the_report(tiny, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from softscope.cli.interpret import interpret_cmd

    task = tiny_task()
    ids = tiny.encode("the movie was great")
    SoftPrompt(tensor=tiny.embed(torch.tensor(ids)).detach(), model="tiny", task="tiny",
               classes=task.classes).save(tmp_path / "p.safetensors")
    monkeypatch.setattr("softscope.methods.interpret.load_model", lambda *a, **k: tiny)
    monkeypatch.setattr("softscope.engine.carry.load_task", lambda *a, **k: task)  # the prompt records no task: --task names it
    res = CliRunner().invoke(interpret_cmd, [str(tmp_path / "p.safetensors"), "--reading", "text:the movie was great",
                                             "--examples", "0", "--task", "tiny", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "agreement with the soft prompt 1.000" in res.output and "interpretable:" in res.output
    assert (tmp_path / "out" / "interpret_summary.json").exists()


def _class_logprobs_by_hand(adapter, task, prompt: torch.Tensor, examples) -> torch.Tensor:
    """[N, C] log-probs of each class's label token, one full-model forward per example (no Scorer)."""
    label_tok = [adapter.encode(" " + w)[0] for w in task.label_words]
    out = []
    for e in examples:
        ids = torch.tensor(list(adapter.bos_ids) + adapter.encode(task.format(e)))
        nb = len(adapter.bos_ids)
        emb = adapter.embed(ids)
        x = torch.cat([emb[:nb], prompt.to(emb.dtype), emb[nb:]])[None]
        with torch.no_grad():
            logits = adapter.model(inputs_embeds=x).logits[0, -1].float()
        out.append(logits.log_softmax(-1)[label_tok])
    return torch.stack(out)


def test_agreement_kl_and_perplexity_against_a_hand_computation(tiny):
    """interpret_reading's numbers on a tiny model, against per-example forwards and the formulas written out.

    The random tiny model prefers one label word whatever the text; label words whose logits lie close ('!' vs
    'good') make the soft prompt and the reading disagree on some examples, so agreement is not trivially 1.
    """
    task = dataclasses.replace(tiny_task(8, 8), label_words=["!", "good"])
    torch.manual_seed(3)
    soft = torch.randn(3, tiny.width)
    ids = tiny.encode("awful boring film")
    rep = interpret_reading(tiny, task, SoftPrompt(tensor=soft), ids, n_examples=0)
    a = _class_logprobs_by_hand(tiny, task, soft, task.test)
    b = _class_logprobs_by_hand(tiny, task, tiny.embed(torch.tensor(ids)).detach(), task.test)
    gold = [task.classes.index(e.label) for e in task.test]
    agree = kl = 0.0
    for ra, rb in zip(a.tolist(), b.tolist()):
        za, zb = math.log(sum(map(math.exp, ra))), math.log(sum(map(math.exp, rb)))
        pa, pb = [x - za for x in ra], [x - zb for x in rb]  # log-softmax over the classes
        agree += max(range(2), key=lambda c: pa[c]) == max(range(2), key=lambda c: pb[c])
        kl += sum(math.exp(x) * (x - y) for x, y in zip(pa, pb))
    n = len(task.test)
    f = rep["faithfulness"]
    assert f["agreement"] == pytest.approx(agree / n, abs=1e-9)
    assert f["kl"] == pytest.approx(kl / n, rel=1e-4)
    assert f["reading_accuracy"] == pytest.approx(sum(int(b[i].argmax()) == g for i, g in enumerate(gold)) / n)
    seq = [tiny.doc_start_id] + ids  # the document start the LM scores text after
    with torch.no_grad():
        lp = tiny.model(input_ids=torch.tensor([seq])).logits[0, :-1].float().log_softmax(-1)
    nll = -sum(lp[i, t].item() for i, t in enumerate(seq[1:])) / len(ids)
    assert rep["scrutability"]["perplexity"] == pytest.approx(math.exp(nll), rel=1e-4)
    assert (agree, n) == (4, 8)  # 4 of 8 predictions agree (seeded tiny model and prompt): not a trivial 0 or 1
