"""Pinned summary numbers of every method on the tiny Llama (conftest): a silent change anywhere fails a test.

Each test runs one method on a fixed small config, recomputes what it can independently (F1 by hand from the
projected text, flips counted from the prediction vectors, perplexity from `token_nll`, rewards from their formula)
and also pins the literal values. Tolerances: exact for counts and ratios of counts, abs 1e-4 for float32 model
numbers (log-probs, losses, NLLs), 1e-3 for RLPrompt rewards (sums over sampled prompts, magnitude ~10).
Everything is float32 on CPU; the values were recorded at 1 thread (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
from collections import Counter

import pytest
import torch

from conftest import make_adapter, tiny_task
from softscope.engine.prompts import SoftPrompt
from softscope.engine.runs import read_json, read_jsonl
from softscope.engine.scoring import Scorer, token_nll

FLOAT = 1e-4  # float32 model outputs (log-probs, losses, NLL)
REWARD = 1e-3  # RLPrompt rewards: means of gap rewards of magnitude ~10


@pytest.fixture(scope="module")
def llama():
    """A private tiny Llama (torch seed 0), so no other test's use of the shared fixture can touch it; 1 thread while
    this module runs (the values were recorded so), the caller's thread count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make_adapter("llama")
    torch.set_num_threads(threads)


def squad_f1(pred: str, ref: str) -> float:
    """SQuAD word F1 written out: lower-case, drop punctuation and articles, multiset overlap of the words."""
    def words(s):
        s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
        return re.sub(r"\b(a|an|the)\b", " ", s).split()

    p, r = words(pred), words(ref)
    if not p or not r:
        return float(p == r)
    same = sum((Counter(p) & Counter(r)).values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(r)
    return 2 * prec * rec / (prec + rec)


# ---- wayward ---------------------------------------------------------------------------------------------------
def test_wayward_selected_gamma_and_f1(llama, tmp_path):
    """Two targets × γ ∈ {0, 0.5, 5}, 4 steps. γ = 5 pulls 'a bad film' back exactly (F1 1) at accuracy 4/8, so it is
    selected with a drop of 5/8 − 4/8 = 0.125 from γ = 0; the 6-token target never reaches F1 0.9: its best is
    'great movie was great and business' vs 'the movie was great and fun' — 4 shared words of 6 and 5 → F1 8/11."""
    from softscope.methods.wayward import WaywardConfig, run_wayward

    cfg = WaywardConfig(device="cpu", steps=4, batch_size=4, lr=5e-2, gamma=[0, 0.5, 5], test_examples=8,
                        target=["the movie was great and fun", "a bad film"], template="task")
    s = run_wayward(cfg, tmp_path, adapter=llama, task=tiny_task(), progress=False)
    rows = read_jsonl(tmp_path / "wayward.jsonl")
    for r in rows:  # independent: F1 from the projection text, accuracy from the per-example correctness string
        assert r["f1"] == pytest.approx(squad_f1(r["projection"], r["target_text"]), abs=1e-12)
        assert r["accuracy"] == r["correct"].count("1") / len(r["correct"])
    got = {(r["target"], r["gamma"]): (r["projection"], r["f1"], r["accuracy"]) for r in rows}
    assert got == {
        ("text/000", 0.0): ("great what what business business business", pytest.approx(2 / 11), 0.625),
        ("text/000", 0.5): ("great what business business business business", pytest.approx(2 / 11), 0.625),
        ("text/000", 5.0): ("great movie was great and business", pytest.approx(8 / 11), 0.625),
        ("text/001", 0.0): ("great what business", 0.0, 0.625),
        ("text/001", 0.5): ("? what TV", 0.0, 0.875),
        ("text/001", 5.0): ("a bad film", 1.0, 0.5),
    }
    # the selection rule by hand: the most accurate prompt with F1 >= 0.9 (ties: higher F1), against γ = 0
    for t in ("text/000", "text/001"):
        ok = [r for r in rows if r["target"] == t and r["f1"] >= 0.9]
        best = max(ok, key=lambda r: (r["accuracy"], r["f1"])) if ok else None
        mine = next(p for p in s["per_target"] if p["target"] == t)
        assert mine["best_gamma"] == (best["gamma"] if best else None)
    a, b = s["per_target"]
    assert (a["reached"], a["best_gamma"], a["max_f1"]) == (False, None, pytest.approx(8 / 11))
    assert (b["reached"], b["best_gamma"], b["best_f1"], b["best_accuracy"]) == (True, 5.0, 1.0, 0.5)
    assert b["drop"] == pytest.approx(0.125, abs=1e-12) and b["acc_gamma0"] == 0.625
    assert (s["share_reached"], s["mean_drop"], s["share_within"]) == (0.5, pytest.approx(0.125), 0.0)
    # the rule again at threshold 0, where several prompts qualify: 'a bad film' takes the most accurate (γ = 0.5,
    # 7/8), the other target's accuracy tie (5/8 at every γ) goes to the higher F1 (γ = 5)
    from softscope.methods.wayward import summarize_wayward

    loose = {t["target"]: t for t in summarize_wayward(rows, threshold=0.0)["per_target"]}
    assert (loose["text/000"]["best_gamma"], loose["text/001"]["best_gamma"]) == (5.0, 0.5)
    assert loose["text/001"]["drop"] == pytest.approx(0.625 - 0.875, abs=1e-12)
    assert [r["distance"] for r in rows] == pytest.approx(
        [0.274827, 0.186869, 0.033966, 0.246923, 0.154425, 0.023131], abs=FLOAT)


# ---- bias ------------------------------------------------------------------------------------------------------
def test_bias_rates(llama, tmp_path, monkeypatch):
    """Label words '!' / 'good' (close logits on the random model, so predictions can move), favoured 'negative',
    strengths 0 and 1, 2 steps. Every clean held-out example is predicted 'good' (12 eligible); at strength 0 the
    control word moves one of them to '!' and the feature none: biased-prediction rate 0 − 1/12. The flips are not
    knife-edge for float32: the closest clean and control log-prob margins are 1.8e-3 and 9.3e-4."""
    from softscope.methods import bias
    from softscope.methods.bias import BiasRunConfig, Feature, control_for

    task = dataclasses.replace(tiny_task(24, 12), label_words=["!", "good"])
    monkeypatch.setattr(bias.features, "load_base_task", lambda name, data_dir: task)
    cfg = BiasRunConfig(model="tiny", task="tiny", feature="word:Spielberg", favoured="negative", strengths=[0.0, 1.0],
                        seeds=1, train_examples=24, tokens=2, steps=2, batch_size=4, lr=0.05, heldout=12, layers="0:1",
                        pool="elaborated", n_targets=1, demos=2, max_new_tokens=3)
    s = bias.run(cfg, tmp_path, adapter=llama, progress=False)
    rows = {r["prompt"]: r for r in read_jsonl(tmp_path / "bias.jsonl")}
    feature = Feature.parse(cfg.feature)
    control = control_for(feature)
    held = task.subset("test", cfg.heldout, 12345)  # the run's held-out draw
    scorer = Scorer(llama, task)
    for name, r in rows.items():  # independent: predictions of clean / feature / control text, flips counted here
        prompt = SoftPrompt.load(tmp_path / "prompts" / name / "prompt.safetensors").tensor
        lp = [scorer.predict(prompt, [dataclasses.replace(e, text=t) for e, t in
                                      zip(held, [f(e.text) for e in held])]).log_softmax(-1)
              for f in (lambda x: x, lambda x: feature.add(x, 0), lambda x: control.add(x, 0))]
        p0, pf, pc = (x.argmax(-1).tolist() for x in lp)
        eligible = [i for i, a in enumerate(p0) if a != 0]  # favoured 'negative' is class 0
        rf = sum(pf[i] == 0 for i in eligible) / len(eligible)
        rc = sum(pc[i] == 0 for i in eligible) / len(eligible)
        assert (r["eligible"], r["feature_flip_rate"], r["control_flip_rate"]) == (len(eligible), rf, rc)
        assert r["biased_prediction_rate"] == pytest.approx(rf - rc, abs=1e-12)
        assert r["favoured_logprob_shift"] == pytest.approx(float((lp[1][:, 0] - lp[0][:, 0]).mean()), abs=1e-6)
        gold = [task.classes.index(e.label) for e in held]
        assert r["accuracy"] == sum(a == g for a, g in zip(p0, gold)) / len(gold)
        descs = read_jsonl(tmp_path / "prompts" / name / "descriptions.jsonl")
        assert r["mention_rate_string"] == sum("spielberg" in d["cut"].lower() for d in descs) / len(descs)
    pinned = {"s0.00-seed0": (-1 / 12, 0.0, 1 / 12, 12, 0.0057012, 0.5, 0.0),
              "s1.00-seed0": (0.0, 0.0, 0.0, 12, 0.0096153, 0.5, 0.0)}
    keys = ("biased_prediction_rate", "feature_flip_rate", "control_flip_rate", "eligible", "favoured_logprob_shift",
            "accuracy", "mention_rate")
    for name, want in pinned.items():
        assert tuple(rows[name][k] for k in keys) == pytest.approx(want, abs=FLOAT), name
    per = {p["strength"]: p for p in s["per_strength"]}
    assert per[0.0]["biased_prediction_rate"] == pytest.approx(-1 / 12) and per[1.0]["biased_prediction_rate"] == 0.0
    assert rows["s1.00-seed0"]["shares"] == {"negative": 1.0, "positive": 0.0}


# ---- describe --------------------------------------------------------------------------------------------------
def test_describe_scores_for_a_fixed_grid(llama, tmp_path):
    """P = e('the movie was great'), layer pairs band:1-2 (4 pairs) × 2 target prompts × 4 new tokens. Every pair
    says 'great great great great': class_rate = 1 of the classes {bad, great} = 0.5; ROUGE-1 against 'the movie
    was great' (normalised 'movie great') = 1 overlap, P 1/4, R 1/2 → F 1/3; the similarity is the sentence
    model's and pinned."""
    from softscope.methods.describe import DescribeConfig, describe

    P = llama.embed(torch.tensor(llama.encode("the movie was great"))).detach()
    f = tmp_path / "p.safetensors"
    SoftPrompt(tensor=P, model="tiny", classes=["bad", "great"], step=5).save(f)
    cfg = DescribeConfig(layers="band:1-2", n_targets=2, max_new_tokens=4, classes=["bad", "great"],
                         references=["the movie was great"])
    res = describe(f, cfg, adapter=llama, progress=False)
    assert len(res.rows) == 8
    for r in res.rows:  # independent: the class names and the ROUGE-1 overlap counted here
        words = re.findall(r"[a-z]+", r["cut"].lower())
        assert r["class_rate"] == sum(c in words for c in ("bad", "great")) / 2
        assert r["rouge1"] == pytest.approx(2 * (words.count("great") >= 1) / (len(words) + 2), abs=1e-9)
    assert {r["cut"] for r in res.rows} == {"great great great great"}
    assert {(r["class_rate"], round(r["rouge1"], 9)) for r in res.rows} == {(0.5, round(1 / 3, 9))}
    ck = res.summary["checkpoints"][0]
    assert ck["class_rate_mean"] == 0.5 and ck["naming_share"] == 0.0  # no description names both classes
    assert ck["rouge1_mean"] == pytest.approx(1 / 3) and ck["max_per_target"]["class_rate"] == [0.5, 0.5]
    assert [r["similarity"] for r in res.rows] == pytest.approx([0.425586] * 8, abs=FLOAT)
    assert ck["similarity_topk"] == pytest.approx(0.425586, abs=FLOAT) == ck["similarity_mean"]
    assert ck["accuracy"] is None  # a bare prompt file names no task: no accuracy column


# ---- PEZ -------------------------------------------------------------------------------------------------------
def test_pez_losses_and_readings_after_6_steps(llama, tmp_path):
    """4 tokens from a seeded random init, lr 0.3, 6 steps, fluency weight 0 and 0.9: the training loss at every
    step (PEZ's reward, lower is better), the hard prompt chosen and its perplexity (exp of the mean token_nll)."""
    from softscope.methods.pez import PezConfig, pez

    cfg = PezConfig(tokens=4, steps=6, batch_size=4, checkpoint_every=3, eval_examples=0, holdout=6, test_examples=8,
                    lr=0.3, fluency_weight=[0.0, 0.9], init="random", seed=0)
    pez(cfg, tmp_path, adapter=llama, task=tiny_task(), progress=False)
    want = {"0": ([4.123476, 3.941088, 3.935985, 3.999001, 3.966059, 3.985262], [43, 43, 21, 22],
                  "sports sports business but", 49.458763),
            "0.9": ([4.123476, 4.013193, 4.008900, 4.050914, 4.026265, 4.041797], [53, 22, 22, 22], "who but but but",
                    42.012305)}
    for w, (losses, ids, text, ppl) in want.items():
        s = read_json(tmp_path / f"w-{w}" / "pez_summary.json")
        logged = [m["loss"] for m in read_jsonl(tmp_path / f"w-{w}" / "metrics.jsonl") if m["event"] == "train"]
        assert logged == pytest.approx(losses, abs=FLOAT)
        assert (s["ids"], s["text"], s["selected_step"], s["test_accuracy"]) == (ids, text, 6, 0.625)
        with torch.no_grad():  # independent: perplexity straight from the token NLLs
            direct = math.exp(float(token_nll(llama, torch.tensor(ids)).mean()))
        assert s["perplexity"] == pytest.approx(direct, rel=1e-6)
        assert s["perplexity"] == pytest.approx(ppl, abs=1e-3)


# ---- RLPrompt --------------------------------------------------------------------------------------------------
def test_rlprompt_rewards_after_3_steps(llama, tmp_path):
    """2-token prompts, 3 steps of 3 sampled prompts: the mean task reward per step is pinned; with λ = 1 the raw
    reward is task − λ · (mean prompt NLL), checked against the logged NLL of the same step."""
    from softscope.methods.rlprompt import RLPromptConfig, rlprompt

    cfg = RLPromptConfig(tokens=2, steps=3, prompts_per_step=3, batch_size=2, hidden=16, top_k=8, eval_every=2,
                         eval_examples=4, holdout=6, test_examples=4, fluency_weight=[0, 1])
    rlprompt(cfg, tmp_path, adapter=llama, task=tiny_task(), progress=False)
    task_r = [7.059144, -10.164828, -13.024707]
    for w, raw in (("0", task_r), ("1", [3.104219, -14.182965, -17.090776])):
        s = read_json(tmp_path / f"w-{w}" / "rlprompt_summary.json")
        curve = s["reward_curve"]
        assert [c["reward_task"] for c in curve] == pytest.approx(task_r, abs=REWARD)
        assert [c["reward_raw"] for c in curve] == pytest.approx(raw, abs=REWARD)
        train = [m for m in read_jsonl(tmp_path / f"w-{w}" / "metrics.jsonl") if m["event"] == "train"]
        if w == "1":  # raw = task − λ·NLL, per prompt, so also for the means
            for c, m in zip(curve, train):
                assert c["reward_raw"] == pytest.approx(c["reward_task"] - m["prompt_nll"], abs=1e-4)
        assert (s["ids"], s["text"], s["selected_step"], s["test_accuracy"]) == ([28, 28], "in in", 0, 0.75)
        assert [c["text"] for c in s["curve"]] == ["in in", "a a", "actors actors"]
        with torch.no_grad():
            direct = math.exp(float(token_nll(llama, torch.tensor(s["ids"])).mean()))
        assert s["perplexity"] == pytest.approx(direct, rel=1e-6) and s["perplexity"] == pytest.approx(49.807049,
                                                                                                      abs=1e-3)


# ---- interpret -------------------------------------------------------------------------------------------------
def test_interpret_agreement_and_perplexity(llama):
    """A seeded 3-token soft prompt read as 'awful boring film' on 12 test examples, label words '!' / 'good':
    agreement from the two prediction vectors compared here (10 of 12, so agreement and disagreement differ),
    perplexity from token_nll, both pinned. The smallest class log-prob margins are 0.014 and 0.016: no flip by
    float rounding."""
    from softscope.methods.interpret import interpret_reading

    task = dataclasses.replace(tiny_task(12, 12), label_words=["!", "good"])
    soft = torch.randn(3, llama.width, generator=torch.Generator().manual_seed(2))
    ids = llama.encode("awful boring film")
    rep = interpret_reading(llama, task, SoftPrompt(tensor=soft), ids, n_examples=0)
    scorer = Scorer(llama, task)
    with torch.no_grad():
        a = scorer.predict(soft, task.test).argmax(-1)
        b = scorer.predict(llama.embed(torch.tensor(ids)), task.test).argmax(-1)
        nll = token_nll(llama, torch.tensor(ids))
    gold = torch.tensor([task.classes.index(e.label) for e in task.test])
    f = rep["faithfulness"]
    assert f["agreement"] == pytest.approx(int((a == b).sum()) / len(gold), abs=1e-6)
    assert f["prompt_accuracy"] == pytest.approx(int((a == gold).sum()) / len(gold), abs=1e-6)
    assert f["reading_accuracy"] == pytest.approx(int((b == gold).sum()) / len(gold), abs=1e-6)
    assert rep["scrutability"]["perplexity"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-6)
    assert (f["agreement"], f["prompt_accuracy"], f["reading_accuracy"]) == pytest.approx((10 / 12, 7 / 12, 5 / 12),
                                                                                         abs=1e-6)
    assert (f["paired"]["a_only"], f["paired"]["b_only"]) == (2, 0)
    assert f["kl"] == pytest.approx(0.00022442, abs=1e-7)
    assert rep["scrutability"]["perplexity"] == pytest.approx(58.576712, abs=1e-3)
    assert rep["scrutability"]["dictionary_share"] == 1.0
