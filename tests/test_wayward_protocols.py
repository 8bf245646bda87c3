"""Waywardness protocols: the authors' settings (`paper`), the early-stopped CPU test (`cpu`), their selection rule,
seed averaging, the paired interval on the drop, and the embedding-scale-free distance."""

import dataclasses

import pytest
import torch
from conftest import make_adapter, tiny_task

from softscope.engine.errors import SoftscopeError
from softscope.engine.models import token_embeddings
from softscope.engine.runs import read_jsonl
from softscope.engine.scoring import Scorer
from softscope.engine.training import train_many
from softscope.methods.wayward import (PAPER_GAMMAS, EarlyStop, WaywardConfig, dev_split, distance_term,
                                       embedding_mean_sq_norm, per_target, run_wayward, seed_means, summarize_wayward,
                                       target_embeddings)

TARGET = "the movie was great and fun"


# ---- presets ----------------------------------------------------------------------------------------------------
def test_paper_protocol_is_the_authors_driver():
    c = WaywardConfig(protocol="paper", task="sst2")
    assert c.gamma == PAPER_GAMMAS == [0.0, 1e-4, 5e-4, 1e-3, 3e-3, 5e-3, 1e-2, 3e-2]
    assert (c.steps, c.lr, c.batch_size, c.max_length, c.schedule, c.grad_clip, c.weight_decay) == \
        (2000, 1e-2, 8, 128, "linear", 1.0, 0.0)
    assert c.start == "target" and c.seeds == [1, 10, 100] and c.f1_threshold == 0.98 and c.selection == "paper"
    assert c.test_examples == 0 and c.patience == 0 and c.bf16_autocast == "off" and c.distance_norm == "none"
    assert c.label_words == ["terrible", "great"]  # their verbalizer
    ag = WaywardConfig(protocol="paper", task="agnews")  # their "long" datasets: half the batch, 256 tokens
    assert (ag.batch_size, ag.max_length) == (4, 256) and ag.label_words == ["World", "Sports", "Business", "Technology"]
    assert WaywardConfig(protocol="paper", task="sst2", label_words=["bad", "good"]).label_words == ["bad", "good"]


def test_cpu_protocol_settings():
    c = WaywardConfig(protocol="cpu", task="sst2")
    assert c.gamma == [0.0, 1e-2] and c.start == "target" and c.patience == 3 and c.eval_every == 25
    assert (c.steps, c.lr, c.schedule, c.dev_examples, c.test_examples) == (400, 1e-2, "constant", 200, 300)
    assert c.selection == "softscope" and c.f1_threshold == 0.9 and c.within == 0.02 and c.bootstrap == 2000
    assert c.seeds == [c.seed]


def test_cpu_protocol_targets_are_quicks_four_shortest():
    from softscope.engine.tasks import data_dir
    from softscope.methods.wayward import load_targets

    if data_dir() is None or not (data_dir() / "targets").is_dir():
        pytest.skip("shared data folder not found")
    quick = load_targets(WaywardConfig(protocol="quick"), "sst2")
    cpu = load_targets(WaywardConfig(protocol="cpu"), "sst2")
    assert cpu == [quick[0], quick[2], quick[7], quick[5]]
    assert len(load_targets(WaywardConfig(protocol="paper"), "sst2")) == 37


def test_new_options_are_validated():
    for kw, msg in ((dict(selection="best"), "selection"), (dict(distance_norm="l1"), "distance-norm"),
                    (dict(train_seeds=["a"]), "train-seeds"), (dict(patience=-1), "patience"),
                    (dict(baseline_min=2.0), "baseline-min")):
        with pytest.raises(SoftscopeError, match=msg):
            WaywardConfig(**kw)
    assert WaywardConfig(train_seeds=["1", "10", "1"]).seeds == [1, 10]


# ---- selection rules and seed averaging on constructed rows ------------------------------------------------------
def _rows():
    """One target, 4 γ × 3 seeds; seed means: γ=0 .80/.20, 1e-4 .82/.98, 1e-3 .78/.99, 1e-2 .70/1.0 (acc/F1)."""
    spec = {0.0: ([0.79, 0.80, 0.81], [0.2, 0.2, 0.2]), 1e-4: ([0.82, 0.82, 0.82], [0.98, 0.98, 0.98]),
            1e-3: ([0.70, 0.80, 0.84], [1.0, 1.0, 0.97]), 1e-2: ([0.70, 0.70, 0.70], [1.0, 1.0, 1.0])}
    return [{"target": "t", "n_tokens": 5, "gamma": g, "seed": s, "accuracy": a, "f1": f, "distance": 1.0}
            for g, (accs, f1s) in spec.items() for s, a, f in zip((1, 10, 100), accs, f1s)]


def test_seed_means_average_before_selection():
    m = {r["gamma"]: r for r in seed_means(_rows())}
    assert m[1e-3]["accuracy"] == pytest.approx(0.78) and m[1e-3]["f1"] == pytest.approx(0.99)
    assert m[0.0]["seeds"] == [1, 10, 100]


def test_paper_selection_rule():
    """Sorted by accuracy: 1e-4 (.82, F1 .98: not strictly above .98), 0 (.80), 1e-3 (.78, F1 .99) -> 1e-3, compared
    to the best accuracy (.82): drop .04. softscope's rule takes F1 >= .98 -> 1e-4, 0.02 above γ = 0."""
    (t,) = per_target(_rows(), 0.98, 0.02, selection="paper")
    assert t["best_gamma"] == 1e-3 and t["reference_gamma"] == 1e-4 and t["reached"]
    assert t["drop"] == pytest.approx(0.04) and t["drop_vs_gamma0"] == pytest.approx(0.02) and not t["within"]
    assert t["seeds"] == 3 and t["drop_ci95"] is None and t["within_basis"] == "point"
    (s,) = per_target(_rows(), 0.98, 0.02, selection="softscope")
    assert s["best_gamma"] == 1e-4 and s["reference_gamma"] == 0.0 and s["drop"] == pytest.approx(-0.02)
    assert s["within"]


def test_paper_selection_falls_back_to_the_most_accurate():
    rows = [r for r in _rows() if r["gamma"] in (0.0, 1e-4)]
    (t,) = per_target(rows, 0.98, 0.02, selection="paper")  # nothing strictly above .98
    assert t["best_gamma"] == 1e-4 and not t["reached"] and t["drop"] == 0.0 and not t["within"]
    assert summarize_wayward(rows, 0.98, 0.02, selection="paper")["share_reached"] == 0.0


# ---- the paired interval on the drop ---------------------------------------------------------------------------
def _pair(n: int, flips: int, f1: float = 1.0):
    """γ = 0 right on 90% of n examples; the γ > 0 prompt the same but wrong on `flips` of those."""
    base = ["1"] * (9 * n // 10) + ["0"] * (n - 9 * n // 10)
    other = ["0"] * flips + base[flips:]
    return [{"target": "t", "n_tokens": 3, "gamma": 0.0, "accuracy": base.count("1") / n, "f1": 0.0, "distance": 5.0,
             "correct": "".join(base)},
            {"target": "t", "n_tokens": 3, "gamma": 0.01, "accuracy": other.count("1") / n, "f1": f1, "distance": 0.1,
             "correct": "".join(other)}]


def test_within_two_points_only_when_the_interval_says_so():
    """One discordant example of 100: drop 0.01, but the bootstrap count of that example is Binomial(100, 1/100),
    whose 97.5% quantile is 3 -> interval [0, 0.03]: not within 2 points. Of 400: Poisson(1) -> [0, 0.0075]."""
    (t,) = per_target(_pair(100, 1), 0.9, 0.02)
    assert t["drop"] == pytest.approx(0.01) and t["drop_ci95"] == pytest.approx([0.0, 0.03])
    assert t["within_basis"] == "ci95" and not t["within"] and not t["significant_drop"]
    (t,) = per_target(_pair(400, 1), 0.9, 0.02)
    assert t["drop_ci95"] == pytest.approx([0.0, 0.0075]) and t["within"]
    rows = _pair(100, 0)
    rows[0].update(correct="1" * 100, accuracy=1.0)  # every example lost: a constant difference
    rows[1].update(correct="0" * 100, accuracy=0.0)
    (t,) = per_target(rows, 0.9, 0.02)
    assert t["drop_ci95"] == pytest.approx([1.0, 1.0]) and t["significant_drop"]
    (t,) = per_target(_pair(100, 1), 0.9, 0.02, n_boot=0)
    assert t["drop_ci95"] is None and t["within_basis"] == "point" and t["within"]


def test_baseline_below_minimum_never_counts():
    s = summarize_wayward(_pair(400, 1), 0.9, 0.02, baseline_min=0.95)
    assert s["below_baseline"] == ["t"] and not s["per_target"][0]["within"] and s["share_within"] == 0.0


# ---- early stopping -----------------------------------------------------------------------------------------
def test_early_stop_keeps_best_and_stops_after_patience():
    scores = iter([0.5, 0.6, 0.6, 0.55, 0.9])  # steps 0, 2, 4, 6 evaluated; 0.9 would come at step 8
    stop = EarlyStop(lambda p: next(scores), k=1, every=2, patience=2)
    P = torch.zeros(1, 2, 3)
    ended = [stop(step, P + step) for step in range(7)]
    assert ended == [False] * 6 + [True]
    assert stop.best_step == [2] and stop.best_acc == [0.6] and stop.stopped_at == [6]
    assert torch.equal(stop.best[0], torch.full((2, 3), 2.0)) and [s for s, _ in stop.history[0]] == [0, 2, 4, 6]


def test_train_many_stops_when_on_step_says_so(tiny):
    task = tiny_task()
    ids, e_t = target_embeddings(tiny, TARGET)
    seen = []
    from softscope.engine.config import TrainConfig

    cfg = TrainConfig(device="cpu", tokens=len(ids), steps=10, batch_size=4, lr=5e-2)
    _, metrics = train_many(cfg, e_t.cpu()[None], adapter=tiny, task=task, progress=False,
                            on_step=lambda s, P: seen.append(s) or s == 3)
    assert seen == [0, 1, 2, 3] and len(metrics) == 3


def test_dev_split_holds_out_of_train_when_there_is_no_dev():
    task = tiny_task(n_train=24)
    tr, dev = dev_split(task, 8, seed=0)
    assert len(dev) == 8 and len(tr.train) == 16 and sorted(map(id, tr.train + dev)) == sorted(map(id, task.train))
    assert not {id(e) for e in dev} & {id(e) for e in tr.train} and len(task.train) == 24
    with_dev = dataclasses.replace(task, dev=task.test[:5])
    tr2, dev2 = dev_split(with_dev, 3, seed=0)
    assert tr2 is with_dev and len(dev2) == 3 and all(e in task.test[:5] for e in dev2)
    with pytest.raises(SoftscopeError, match="dev"):
        dev_split(task, 20, seed=0)


def test_cpu_style_sweep_on_tiny_model(tiny, tmp_path):
    """Both γ start at e(t); early stopping on held-out dev; rows carry the step-0 accuracy of e(t), per-example
    correctness and the best-dev step; with 0 steps both prompts are e(t) itself and score its accuracy."""
    task = tiny_task(n_train=24)
    cfg = WaywardConfig(device="cpu", target=[TARGET], gamma=[0, 1.0], start="target", steps=0, patience=2,
                        eval_every=2, dev_examples=8, test_examples=8, batch_size=4, template="task")
    s = run_wayward(cfg, tmp_path / "z", adapter=tiny, task=task, progress=False)
    rows = read_jsonl(tmp_path / "z" / "wayward.jsonl")
    _, e_t = target_embeddings(tiny, TARGET)
    test = task.subset("test", 8, 0)
    acc = Scorer(tiny, task).accuracy(e_t, test)
    assert [r["accuracy"] for r in rows] == [acc, acc] and all(r["start_accuracy"] == acc for r in rows)
    assert all(r["f1"] == 1.0 and len(r["correct"]) == 8 and r["steps"] == 0 for r in rows)
    assert s["per_target"][0]["acc_start"] == acc and s["per_target"][0]["drop_ci95"] == [0.0, 0.0]
    assert s["dev_examples"] == 8

    cfg = dataclasses.replace(cfg, steps=12, lr=0.3)
    s = run_wayward(cfg, tmp_path / "t", adapter=tiny, task=task, progress=False)
    rows = read_jsonl(tmp_path / "t" / "wayward.jsonl")
    for r in rows:
        hist = r["dev_history"]
        assert r["dev_accuracy"] == max(a for _, a in hist) and r["steps"] % 2 == 0
        assert r["steps"] == next(st for st, a in hist if a == r["dev_accuracy"])  # the first best is kept
        assert r["stopped_at"] is None or r["stopped_at"] - r["steps"] == 4  # patience 2 × every 2


def test_train_seeds_give_one_row_per_seed_and_average(tiny, tmp_path):
    task = tiny_task()
    cfg = WaywardConfig(device="cpu", target=[TARGET], gamma=[0, 1.0], start="target", steps=3, lr=0.2,
                        train_seeds=[1, 10], test_examples=8, batch_size=4, template="task")
    s = run_wayward(cfg, tmp_path / "s", adapter=tiny, task=task, progress=False)
    rows = read_jsonl(tmp_path / "s" / "wayward.jsonl")
    assert sorted((r["gamma"], r["seed"]) for r in rows) == [(0, 1), (0, 10), (1.0, 1), (1.0, 10)]
    by = {(r["gamma"], r["seed"]): r for r in rows}
    assert s["per_target"][0]["acc_gamma0"] == pytest.approx((by[0, 1]["accuracy"] + by[0, 10]["accuracy"]) / 2)
    assert s["train_seeds"] == [1, 10] and s["per_target"][0]["seeds"] == 2
    assert len(list((tmp_path / "s" / "prompts").glob("*seed-10.safetensors"))) == 2


# ---- the distance on embedding-scaled models ------------------------------------------------------------------
def test_embedding_mean_sq_norm_includes_gemmas_scale():
    g = make_adapter("gemma3")  # multiplies embeddings by √d = √32
    W = g.model.get_input_embeddings().weight.detach().double()
    expected = float((W ** 2).sum(-1).mean()) * 32
    assert embedding_mean_sq_norm(g, chunk=7) == pytest.approx(expected, rel=1e-5)
    assert float(token_embeddings(g).double().pow(2).sum(-1).mean()) == pytest.approx(expected, rel=1e-5)


def test_normalised_distance_is_scale_free():
    """Multiplying every embedding and the prompt by c leaves γ·d/E‖e‖² unchanged; the raw term grows by c²."""
    torch.manual_seed(0)
    E, P = torch.randn(50, 8), torch.randn(2, 3, 8)
    e_t = E[[4, 9, 2]]
    m = float(E.pow(2).sum(-1).mean())
    c = 25.0
    a = distance_term([0.1, 1.0], e_t, m).fn(P)
    b = distance_term([0.1, 1.0], c * e_t, c * c * m).fn(c * P)
    assert torch.allclose(a, b, rtol=1e-5)
    assert torch.allclose(distance_term(0.1, c * e_t).fn(c * P), c * c * distance_term(0.1, e_t).fn(P), rtol=1e-5)


def test_sweep_records_scaled_distance(tiny, tmp_path):
    cfg = WaywardConfig(device="cpu", target=[TARGET], gamma=[0, 1.0], start="target", steps=2, lr=0.2,
                        test_examples=8, batch_size=4, template="task", distance_norm="embedding")
    s = run_wayward(cfg, tmp_path / "d", adapter=tiny, task=tiny_task(), progress=False)
    m = embedding_mean_sq_norm(tiny)
    assert s["embedding_mean_sq_norm"] == pytest.approx(m)
    for r in read_jsonl(tmp_path / "d" / "wayward.jsonl"):
        assert r["distance_scaled"] == pytest.approx(r["distance"] / m)
