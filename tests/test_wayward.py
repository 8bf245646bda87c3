"""Prompt waywardness: γ really enters training, F1 is SQuAD's, e(t) projects back to t, batched = one by one."""

import json

import pytest
import torch
from conftest import needs_default_model, tiny_task

from softscope.engine.config import TrainConfig
from softscope.engine.errors import SoftscopeError
from softscope.engine.metrics import word_f1
from softscope.engine.runs import read_jsonl
from softscope.engine.training import init_prompt, train, train_many
from softscope.methods.wayward import (WaywardConfig, compare, compare_table, distance, distance_term, reading, run_wayward,
                               summarize_wayward, target_embeddings)

TARGET = "the movie was great and fun"


def _cfg(**kw):
    base = dict(device="cpu", steps=6, batch_size=4, lr=5e-2, eval_examples=4, final_eval="none", checkpoint_every=6)
    base.update(kw)
    return TrainConfig(**base)


def test_distance_to_target_falls_as_gamma_grows(tiny, tmp_path):
    """Proof that γ is applied: the trained prompt ends nearer e(t) for every larger γ (same init, same data)."""
    task = tiny_task()
    ids, e_t = target_embeddings(tiny, TARGET)
    cfg = _cfg(tokens=len(ids), steps=10)
    P0 = init_prompt(tiny, len(ids), "vocab", torch.Generator().manual_seed(0))
    d = []
    for g in (0.0, 0.3, 3.0):
        res = train(cfg, tmp_path / f"g{g}", adapter=tiny, task=task, loss_terms=[distance_term(g, e_t)], init=P0,
                    progress=False)
        d.append(float(distance(res.prompt.tensor, e_t)))
    d0 = float(distance(P0, e_t))
    assert d[0] > d[1] > d[2], d
    assert d[2] < 0.5 * d0  # the strong pull closes most of the gap in 10 steps
    logged = [m for m in read_jsonl(tmp_path / "g3.0" / "metrics.jsonl") if m["event"] == "train"]
    assert logged[0]["gamma_distance"] == pytest.approx(3.0 * d0, rel=1e-4)  # the term is γ·Σ‖p−e‖²/n at step 1


def test_distance_is_mean_over_positions_of_squared_l2():
    P, e = torch.zeros(2, 3), torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 1.0]])
    assert float(distance(P, e)) == pytest.approx((9 + 1) / 2)
    K = torch.stack([P, e])
    assert distance(K, e).tolist() == pytest.approx([5.0, 0.0])
    assert distance_term([0.0, 2.0], e).fn(K).tolist() == pytest.approx([0.0, 0.0])
    assert distance_term([2.0, 2.0], e).fn(K).tolist() == pytest.approx([10.0, 0.0])


def test_projecting_target_embeddings_gives_f1_one(tiny):
    ids, e_t = target_embeddings(tiny, TARGET)
    r = reading(tiny, e_t, TARGET, ids)
    assert r["f1"] == 1.0 and r["token_match"] == 1.0 and r["distance"] == pytest.approx(0.0, abs=1e-6)
    assert r["projection"] == TARGET


def test_reading_of_a_prompt_two_words_off_the_target(tiny):
    """P = e("the movie was bad and boring"), target "the movie was great and fun": the projection reads P back, and
    SQuAD F1 over (movie, was, bad, and, boring) vs (movie, was, great, and, fun) is 3/5 each way -> 0.6."""
    ids, e_t = target_embeddings(tiny, TARGET)
    other_ids, P = target_embeddings(tiny, "the movie was bad and boring")
    assert len(other_ids) == len(ids)  # one token per word in the tiny tokenizer: positions line up
    r = reading(tiny, P, TARGET, ids)
    assert r["projection"] == "the movie was bad and boring" and r["f1"] == pytest.approx(0.6)
    same = sum(a == b for a, b in zip(other_ids, ids))
    assert same == 4 and r["token_match"] == pytest.approx(4 / 6)
    want = sum(float(((P[i] - e_t[i]) ** 2).sum()) for i in range(len(ids))) / len(ids)
    assert r["distance"] == pytest.approx(want, rel=1e-5)


@needs_default_model
def test_projecting_target_embeddings_gives_f1_one_on_default_model():
    from softscope.engine.models import load_model

    a = load_model("smollm2-135m")
    for text in ("Write an answer to the given question, such that the answer matches the \"anwer type\".",
                 "Sea salt and freshly ground black pepper"):
        ids, e_t = target_embeddings(a, text)
        r = reading(a, e_t, text, ids)
        assert r["f1"] == 1.0 and r["token_match"] == 1.0


@pytest.mark.parametrize("pred,ref,f1", [
    ("the cat sat on the mat", "A cat sat on mat.", 1.0),  # articles, case and punctuation are dropped
    ("Paris, France", "paris", 2 / 3),  # precision 1/2, recall 1 → 2·(1/2)/(3/2)
    ("hello hello world", "hello world world", 2 / 3),  # multiset overlap: one hello, one world
    ("red blue", "green", 0.0),
    ("", "", 1.0),
    ("the", "cat", 0.0),  # prediction normalises to nothing
])
def test_word_f1_matches_squad_definition(pred, ref, f1):
    assert word_f1(pred, ref) == pytest.approx(f1)


def test_batched_training_equals_separate_runs(tiny, tmp_path):
    """train_many (K prompts per forward) ends where K `train` calls end, per-prompt clipping included."""
    task = tiny_task()
    ids, e_t = target_embeddings(tiny, TARGET)
    gammas = [0.0, 0.5, 5.0]
    cfg = _cfg(tokens=len(ids), steps=5, grad_clip=0.05)  # small clip: the clipping path is exercised
    P0 = init_prompt(tiny, len(ids), "vocab", torch.Generator().manual_seed(1))
    Ps, metrics = train_many(cfg, P0.unsqueeze(0).repeat(3, 1, 1), adapter=tiny, task=task,
                             loss_terms=[distance_term(gammas, e_t)], progress=False)
    assert len(metrics) == 5 and len(metrics[0]["loss"]) == 3
    for k, g in enumerate(gammas):
        res = train(cfg, tmp_path / f"g{g}", adapter=tiny, task=task, loss_terms=[distance_term(g, e_t)], init=P0,
                    progress=False)
        assert torch.allclose(Ps[k], res.prompt.tensor, atol=1e-5), (g, (Ps[k] - res.prompt.tensor).abs().max())
        first = [m for m in read_jsonl(tmp_path / f"g{g}" / "metrics.jsonl") if m["event"] == "train"][0]
        assert metrics[0]["loss"][k] == pytest.approx(first["loss"], rel=1e-5)
    assert not torch.allclose(Ps[0], Ps[2])


def _sweep_cfg(**kw):
    base = dict(device="cpu", steps=4, batch_size=4, lr=5e-2, gamma=[0, 0.5, 5], test_examples=8,
                target=[TARGET, "a bad film"], template="task")
    base.update(kw)
    return WaywardConfig(**base)


def test_sweep_rows_summary_plots_and_batched_equals_sequential(tiny, tmp_path):
    task = tiny_task()
    s = run_wayward(_sweep_cfg(), tmp_path / "b", adapter=tiny, task=task, progress=False)
    rows = read_jsonl(tmp_path / "b" / "wayward.jsonl")
    assert len(rows) == 6 and s["rows"] == 6 and s["targets"] == 2
    assert {r["n_tokens"] for r in rows} == {6, 3}
    for r in rows:  # each row's F1 is SQuAD F1 of its own projection against its target text
        assert r["f1"] == word_f1(r["projection"], r["target_text"])
        assert 0 <= r["accuracy"] <= 1 and (tmp_path / "b" / r["prompt"]).exists()
    for name in ("wayward_summary.json", "f1_vs_accuracy.png", "drop_vs_length.png", "config.json"):
        assert (tmp_path / "b" / name).exists()
    run_wayward(_sweep_cfg(batched=False), tmp_path / "s", adapter=tiny, task=task, progress=False)
    seq = read_jsonl(tmp_path / "s" / "wayward.jsonl")
    for a, b in zip(rows, seq):
        assert (a["target"], a["gamma"], a["projection"]) == (b["target"], b["gamma"], b["projection"])
        assert a["accuracy"] == b["accuracy"] and a["distance"] == pytest.approx(b["distance"], rel=1e-4)
    table = compare_table(compare([tmp_path / "b", tmp_path / "s"]))
    assert table.count("tiny-llama") == 2


@pytest.mark.parametrize("batched", [True, False])
def test_mixed_start_gamma0_from_vocab_others_from_target(tiny, tmp_path, batched):
    s = run_wayward(_sweep_cfg(start="mixed", steps=0, target=[TARGET], batched=batched), tmp_path / "m",
                    adapter=tiny, task=tiny_task(), progress=False)
    rows = {r["gamma"]: r for r in read_jsonl(tmp_path / "m" / "wayward.jsonl")}
    assert rows[0.0]["distance"] > 0 and rows[0.0]["f1"] < 1
    assert all(rows[g]["f1"] == 1.0 and rows[g]["distance"] == pytest.approx(0, abs=1e-6) for g in (0.5, 5.0))
    assert s["per_target"][0]["best_gamma"] in (0.5, 5.0)


def test_killed_sweep_resumes_without_recomputing(tiny, tmp_path, monkeypatch):
    task = tiny_task()
    out = tmp_path / "w"
    run_wayward(_sweep_cfg(), out, adapter=tiny, task=task, progress=False)
    rows = read_jsonl(out / "wayward.jsonl")
    # a kill after the first target: only its rows made it to disk
    (out / "wayward.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    calls = []
    import softscope.methods.wayward.sweep as w

    real = w.train_many
    monkeypatch.setattr(w, "train_many", lambda cfg, inits, **k: calls.append(inits.shape) or real(cfg, inits, **k))
    with pytest.raises(SoftscopeError, match="--resume"):
        run_wayward(_sweep_cfg(), out, adapter=tiny, task=task, progress=False)
    run_wayward(_sweep_cfg(), out, adapter=tiny, task=task, resume=True, progress=False)
    assert calls == [torch.Size([3, 3, tiny.width])]  # only the second target ("a bad film", 3 tokens) trained
    again = read_jsonl(out / "wayward.jsonl")
    assert again[:3] == rows[:3] and len(again) == 6
    assert [r["projection"] for r in again[3:]] == [r["projection"] for r in rows[3:]]  # same result as unbroken


def test_summary_best_prompt_and_drop():
    rows = [
        {"target": "t1", "n_tokens": 4, "gamma": 0.0, "accuracy": 0.90, "f1": 0.0, "distance": 9.0},
        {"target": "t1", "n_tokens": 4, "gamma": 0.01, "accuracy": 0.89, "f1": 0.95, "distance": 1.0},
        {"target": "t1", "n_tokens": 4, "gamma": 0.03, "accuracy": 0.80, "f1": 1.0, "distance": 0.5},
        {"target": "t2", "n_tokens": 7, "gamma": 0.0, "accuracy": 0.80, "f1": 0.1, "distance": 9.0},
        {"target": "t2", "n_tokens": 7, "gamma": 0.03, "accuracy": 0.70, "f1": 0.5, "distance": 2.0},
    ]
    s = summarize_wayward(rows, threshold=0.9, within=0.02)
    t1, t2 = s["per_target"]
    assert t1["best_gamma"] == 0.01 and t1["drop"] == pytest.approx(0.01) and t1["within"]
    assert t2["drop"] is None and not t2["within"] and t2["max_f1"] == 0.5
    assert s["share_reached"] == 0.5 and s["share_within"] == 0.5 and s["mean_drop"] == pytest.approx(0.01)
    assert s["by_gamma"]["0.03"]["share_f1_at_threshold"] == 0.5


def test_config_validation_and_protocols():
    with pytest.raises(SoftscopeError, match="include 0"):
        WaywardConfig(gamma=[1e-3])
    with pytest.raises(SoftscopeError, match="numbers"):
        WaywardConfig(gamma=["x"])
    with pytest.raises(SoftscopeError, match="protocol"):
        WaywardConfig(protocol="medium")
    q = WaywardConfig(protocol="quick")
    assert q.gamma == [0.0, 1e-3, 1e-2, 3e-2] and q.test_examples == 200 and q.start == "mixed"
    assert q.bf16_autocast == "auto" and not q.eval_bf16  # bf16 where the CPU has it, float32 scoring
    assert WaywardConfig(protocol="full").gamma == [0.0, 1e-4, 5e-4, 1e-3, 3e-3, 5e-3, 1e-2, 3e-2]


def test_protocol_targets_from_shared_data():
    from softscope.engine.tasks import data_dir
    from softscope.methods.wayward import load_targets

    if data_dir() is None or not (data_dir() / "targets").is_dir():
        pytest.skip("shared data folder not found")
    quick = load_targets(WaywardConfig(protocol="quick"), "sst2")
    assert len(quick) == 8 and sum(n.startswith("pile_n") for n, _ in quick) == 4
    full = load_targets(WaywardConfig(protocol="full"), "sst2")
    assert len(full) == 37 and sum(n.startswith("good_prompts/") for n, _ in full) == 5
    with pytest.raises(SoftscopeError, match="picks its own"):
        load_targets(WaywardConfig(protocol="quick", target=["x"]), "sst2")
    assert load_targets(WaywardConfig(targets=["pile_n4.json"], max_targets=3), "sst2")[0][0] == "pile_n4/prompt00"


def test_cli_wayward_and_compare(tiny, tmp_path, monkeypatch, capsys):
    from softscope import cli

    jl = tmp_path / "task"
    jl.mkdir()
    task = tiny_task()
    for split in ("train", "test"):
        (jl / f"{split}.jsonl").write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n"
                                                   for e in getattr(task, split)))
    monkeypatch.setattr("softscope.cli.wayward.load_model_for", lambda cfg: tiny)
    args = ["wayward", "--task", str(jl), "--target", TARGET, "--gamma", "0,1", "--steps", "2", "--batch-size", "4",
            "--test-examples", "6", "--out", str(tmp_path / "w"), "--device", "cpu"]
    cli.main(args + ["--target", "a bad film", "--max-targets", "1"])
    out = capsys.readouterr().out
    assert "F1 over 0.9 reached" in out and "text/000" in out
    assert len(read_jsonl(tmp_path / "w" / "wayward.jsonl")) == 2
    cli.main(["wayward", "--out", str(tmp_path / "w"), "--resume", "--max-targets", "2"])  # grow the killed sweep
    assert len(read_jsonl(tmp_path / "w" / "wayward.jsonl")) == 4
    cli.main(["wayward-compare", str(tmp_path / "w"), "--per-target", "--out", str(tmp_path / "cmp")])
    assert (tmp_path / "cmp" / "compare_drop_vs_length.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "| tiny-llama |" in out
    rows = read_jsonl(tmp_path / "w" / "wayward.jsonl")
    r1 = next(r for r in rows if r["target"] == "text/001" and r["gamma"] == 1)
    assert f"| text/001 ({r1['n_tokens']}) |" in out and f"{r1['accuracy']:.3f} / {r1['f1']:.2f}" in out
    with pytest.raises(SystemExit) as e:
        cli.main(args)  # the run dir exists: resume or choose another --out
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["wayward", "--protocol", "quick", "--target", "x", "--out", str(tmp_path / "q")])
    assert e.value.code == 2


def test_bf16_training_still_scores_in_float32(tiny, tmp_path, monkeypatch):
    """--bf16-autocast speeds up training only: the recorded accuracy is the plain float32 score of the prompt."""
    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.scoring import Scorer

    seen = {"loss": set(), "accuracy": set()}
    loss, acc = Scorer.label_loss_per_row, Scorer.accuracy
    monkeypatch.setattr(Scorer, "label_loss_per_row",
                        lambda self, *a, **k: seen["loss"].add(self.autocast_bf16) or loss(self, *a, **k))
    monkeypatch.setattr(Scorer, "accuracy", lambda self, *a, **k: seen["accuracy"].add(self.autocast_bf16)
                        or acc(self, *a, **k))
    task, cfg = tiny_task(), _sweep_cfg(bf16_autocast=True, target=[TARGET])
    run_wayward(cfg, tmp_path / "bf", adapter=tiny, task=task, progress=False)
    assert seen == {"loss": {True}, "accuracy": {False}}  # trained in bf16, scored in float32
    rows = read_jsonl(tmp_path / "bf" / "wayward.jsonl")
    test = task.subset("test", cfg.test_examples, cfg.seed)
    for r in rows:
        assert r["accuracy"] == acc(Scorer(tiny, task), SoftPrompt.load(tmp_path / "bf" / r["prompt"]).tensor, test)


def test_sweeps_that_differ_only_in_their_units_share_one_worker_context():
    from softscope.methods.wayward import WaywardConfig, context_config

    a = WaywardConfig(model="m", target=["one", "two"], gamma=[0.0, 0.01], executor="local", baseline_min=0.8)
    b = WaywardConfig(model="m", target=["three"], gamma=[0.0, 0.1], executor="ray", cpus_per_unit=2, f1_threshold=0.5)
    # the executor keys a worker's context on repr(setup_args): equal here, so the second sweep reuses the first's
    assert repr((context_config(a),)) == repr((context_config(b),))
    assert context_config(a).target is None and context_config(a).gamma == WaywardConfig().gamma
    assert a.target == ["one", "two"] and a.gamma == [0.0, 0.01]  # the sweep's own config is untouched
    c = WaywardConfig(model="m", target=["one"], steps=a.steps + 1)  # a training setting is part of the context
    assert repr((context_config(a),)) != repr((context_config(c),))
