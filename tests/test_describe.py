"""InSPEcT: cut rule, description scores, target prompts, and the describe run dir end to end (tiny model)."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from scipy.stats import ConstantInputWarning, spearmanr

from conftest import tiny_task
from softscope.methods.describe import SCORES, DescribeConfig, correlations, cut, describe, summarize_checkpoint
from softscope.engine.errors import SoftscopeError
from softscope.engine.metrics import class_rate, rouge_normalize, rouge_scores, semantic_similarity
from softscope.engine.target_prompts import POOLS, build, sample_demos


def test_cut_rule():
    assert cut(" the sentiment of a review. It was") == "the sentiment of a review"
    assert cut(".. is this positive | or negative") == ".. is this positive"  # marks in the first 20% stay
    assert cut("\nthe task\nis") == "the task"  # the leading newline lies in the first 20%: skipped
    assert cut("no marks at all") == "no marks at all"
    assert cut("classify reviews: positive, negative\nmore") == "classify reviews: positive, negative"
    assert cut("$5 costs $ less") == "$5 costs"


def test_class_rate_and_rouge():
    assert class_rate("the emotional tone: Positive, negative, or neutral", ["negative", "positive"]) == 1.0
    assert class_rate("positively negatives", ["negative", "positive"]) == 0.0  # whole words only
    assert class_rate("about sci tech", ["world", "sci tech"]) == 0.5  # multi-word class names as phrases
    assert rouge_normalize("Is THE sentiment of this sentence positive, or negative?") == \
        "sentiment sentence positive negative"
    r = rouge_scores("What is the sentiment? positive or negative",
                     ["Is this sentence positive or negative?", "What is this text about?"])
    assert r["rouge1"] == pytest.approx(2 * (2 / 3 * 2 / 3) / (4 / 3))  # {sentiment positive negative} vs 3 words
    assert rouge_scores("classify sentiments", ["sentiment classification"])["rouge1"] > 0  # stemming
    assert rouge_scores("the of and", ["anything"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_semantic_similarity_ranks_related_text_higher():
    refs = ["Is this movie review positive or negative?"]
    near, far, empty = semantic_similarity(["What is the sentiment of the review?", "The train leaves at nine", ""], refs)
    assert near > far + 0.2 and empty == 0.0


def test_target_prompts(tiny):
    assert sample_demos("plain", 3) == sample_demos("plain", 3)
    assert sample_demos("plain", 3) != sample_demos("plain", 4)
    tp = build(tiny, "plain", 5, seed=1)
    x = tiny.encode("x")[0]
    assert len(tp.placeholder_positions) == 5 and tp.placeholder_positions[-1] == len(tp.ids) - 1
    assert all(tp.ids[p] == x for p in tp.placeholder_positions)
    assert tp.text.count("|") == 3 and tp.text.endswith("|")
    custom = build(tiny, "the task : {prompt} . what", 2)
    assert [custom.ids[p] for p in custom.placeholder_positions] == [x, x] and custom.ids[-1] != x
    with pytest.raises(SoftscopeError, match="prompt"):
        build(tiny, "no marker here", 2)
    # pools are data with parallel entries, and none of them describes a built-in task (no leaks)
    assert len({len(v) for v in POOLS.values()}) == 1 and len(POOLS["plain"]) >= 8
    leak = ("sentiment", "positive", "negative", "emotion", "review", "topic", "news", "sport", "question",
            "subjective", "objective", "opinion", "world", "business", "location", "number")
    for pool, demos in POOLS.items():
        for d in demos:
            assert not any(w in d.lower() for w in leak), (pool, d)


def test_summary_aggregates():
    rows = [{"target_seed": s, "source_layer": l, "target_layer": l, "cut": f"{s}{l}", "class_rate": cr,
             "rouge1": 0.1 * l, "rouge2": 0.0, "rougeL": 0.1, "similarity": 0.1 * l + 0.01 * s}
            for s, cr in ((0, 1.0), (1, 0.0)) for l in (1, 2, 3)]
    ck = summarize_checkpoint(rows, top_k=2)
    assert ck["best"]["class_rate"]["score"] == 1.0 and ck["best"]["class_rate"]["target_seed"] == 0
    assert ck["class_rate_mean"] == 0.5 and ck["naming_share"] == 0.5
    assert ck["max_per_target"]["class_rate"] == [1.0, 0.0] and ck["class_rate_max_mean"] == 0.5
    assert ck["similarity_topk"] == pytest.approx((0.31 + 0.30) / 2)
    assert ck["best"]["similarity"]["source_layer"] == 3


def test_describe_run_dir_end_to_end(tiny, tmp_path, monkeypatch):
    from softscope.engine.config import TrainConfig
    from softscope.engine.training import train

    task = tiny_task()
    cfg = TrainConfig(task="tiny", tokens=3, steps=4, checkpoint_every=2, eval_examples=0, final_eval="none",
                      device="cpu", lr=0.05)
    run = tmp_path / "run"
    train(cfg, run, adapter=tiny, task=task, progress=False)
    dcfg = DescribeConfig(layers="band:1-2", n_targets=2, max_new_tokens=4, classes=["negative", "positive"],
                          references=["is the movie review positive or negative"], task="tiny-custom-unknown")
    res = describe(run, dcfg, adapter=tiny, progress=False)
    out = run / "describe"
    rows = [json.loads(l) for l in (out / "descriptions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 4 * 2 == len(res.rows)  # checkpoints x pairs x target prompts
    assert {r["step"] for r in rows} == {0, 2, 4}
    assert {"text", "cut", "class_rate", "rouge1", "rouge2", "rougeL", "similarity"} <= set(rows[0])
    s = json.loads((out / "describe_summary.json").read_text())
    assert [c["step"] for c in s["checkpoints"]] == [0, 2, 4]
    assert set(s["correlation"]["class_rate_mean"]) >= {"spearman", "spearman_p", "spearman_ci95"}
    assert s["primary_score"] == "similarity_topk" and "similarity_topk" not in s["secondary_scores"]
    assert all(c["accuracy_examples"] and len(c["accuracy_ci95"]) == 2 for c in s["checkpoints"])
    acc = [c["accuracy"] for c in s["checkpoints"]]
    for key in ("class_rate_mean", "similarity_topk"):  # against scipy on the summary's own columns
        with warnings.catch_warnings():  # a constant column is a legal outcome here: both sides are then nan
            warnings.simplefilter("ignore", ConstantInputWarning)
            want = spearmanr(acc, [c[key] for c in s["checkpoints"]]).statistic
        got = s["correlation"][key]["spearman"]
        assert (math.isnan(want) and got is None) or got == pytest.approx(want), key  # the file holds null for nan
    assert (out / "heatmap_class_rate.png").stat().st_size > 1000
    assert (out / "accuracy_vs_score.png").exists()
    assert json.loads((out / "config.json").read_text())["config"]["layers"] == "band:1-2"

    # resume: nothing is generated again for finished checkpoints
    import softscope.methods.describe.sweep as d

    monkeypatch.setattr(d, "describe_prompt", lambda *a, **k: pytest.fail("regenerated a finished checkpoint"))
    again = describe(run, dcfg, adapter=tiny, progress=False)
    assert again.summary["checkpoints"] == res.summary["checkpoints"]
    with pytest.raises(SoftscopeError, match="other settings"):
        describe(run, DescribeConfig(layers="band:1-3", classes=["a", "b"], references=["r"]), adapter=tiny,
                 progress=False)


def test_config_validation():
    with pytest.raises(SoftscopeError, match="target-prompt"):
        DescribeConfig(target_prompt="nothing to replace")
    with pytest.raises(SoftscopeError, match="checkpoints"):
        DescribeConfig(checkpoints="first")
    assert DescribeConfig(target_prompt="It means {prompt}", n_targets=3).n_targets == 1


def test_cli_describe_prompt_file(tiny, tmp_path, monkeypatch):
    from softscope import cli
    from softscope.engine.prompts import SoftPrompt

    monkeypatch.setattr("softscope.methods.describe.sweep.load_model", lambda *a, **k: tiny)
    f = tmp_path / "p.safetensors"
    SoftPrompt(tensor=torch.randn(2, tiny.width), model="tiny", classes=["negative", "positive"], step=7,
               accuracy=0.5).save(f)
    refs = tmp_path / "refs.txt"
    refs.write_text("is the review positive or negative\nclassify the movie review\n")
    cli.main(["describe", str(f), "--layers", "1:1,2:3", "--max-new-tokens", "3", "--n-targets", "1",
              "--references", str(refs), "--references", "sentiment, of a review"])
    s = json.loads((tmp_path / "p-describe" / "describe_summary.json").read_text())
    assert s["checkpoints"][0]["step"] == 7 and s["pairs"] == 2
    cfg = json.loads((tmp_path / "p-describe" / "config.json").read_text())
    assert cfg["references"] == ["is the review positive or negative", "classify the movie review",
                                 "sentiment, of a review"]
    with pytest.raises(SystemExit) as e:
        cli.main(["describe", str(tmp_path / "missing.safetensors")])
    assert e.value.code == 2


def test_paper_cut_rule():
    from softscope.methods.describe import cut_paper

    assert cut_paper("  the sentiment of a review. It was") == "the sentiment of a review"
    # marks before the 20% mark move the start past them, and nothing is stripped after the cut
    assert cut_paper(".. is this positive | or negative") == " is this positive "
    assert cut(".. is this positive | or negative") == ".. is this positive"
    # no mark at or past 20%: the whole (stripped) text, its early part kept
    assert cut_paper("ab|cdefghijklmnop ") == "ab|cdefghijklmnop"
    # a mark exactly at 20% of the length cuts for the authors (>=), not for softscope (>)
    assert cut_paper("abcd.fghijklmnopqrst") == "abcd" and cut("abcd.fghijklmnopqrst") == "abcd.fghijklmnopqrst"


def test_protocol_paper_settings():
    p = DescribeConfig(protocol="paper")
    assert (p.source_pass, p.stop, p.cut, p.layers, p.max_new_tokens, p.n_targets) == \
        ("after-block-0", "paper", "paper", "all", 60, 1)
    mine = DescribeConfig(protocol="paper", layers="4:4,8:4", max_new_tokens=30)  # explicit choices are kept
    assert (mine.layers, mine.max_new_tokens, mine.source_pass) == ("4:4,8:4", 30, "after-block-0")
    d = DescribeConfig()
    assert (d.source_pass, d.stop, d.cut, d.layers, d.n_targets) == ("embeddings", "eos", "softscope", "every:3", 3)
    for bad in (dict(protocol="authors"), dict(source_pass="x"), dict(stop="dollar"), dict(cut="mine"),
                dict(control_text=" ")):
        with pytest.raises(SoftscopeError):
            DescribeConfig(**bad)


def test_describe_control_and_paper_protocol(tiny, tmp_path, monkeypatch):
    """--control describes e(description) on the same grid; --protocol paper runs end to end and records itself."""
    from softscope.engine.prompts import SoftPrompt

    f = tmp_path / "p.safetensors"
    SoftPrompt(tensor=torch.randn(2, tiny.width), model="tiny", classes=["negative", "positive"], step=5).save(f)
    text = "is the movie positive or negative"
    cfg = DescribeConfig(layers="band:1-2", n_targets=2, max_new_tokens=3, classes=["negative", "positive"],
                         references=["what is the sentiment of the review", text], control=True, control_text=text)
    res = describe(f, cfg, adapter=tiny, progress=False)
    c = res.summary["control"]
    assert c["text"] == text and c["tokens"] == len(tiny.encode(text)) and c["pairs"] == 4 and c["target_prompts"] == 2
    rows = [json.loads(l) for l in (tmp_path / "p-describe" / "descriptions.jsonl").read_text().splitlines()]
    assert sum(r["checkpoint"] == "control" for r in rows) == 8 and len(res.rows) == 8  # control rows kept apart
    import softscope.methods.describe.sweep as d

    monkeypatch.setattr(d, "describe_prompt", lambda *a, **k: pytest.fail("regenerated"))
    assert describe(f, cfg, adapter=tiny, progress=False).summary["control"] == c
    monkeypatch.undo()
    paper = describe(f, DescribeConfig(protocol="paper", max_new_tokens=3, classes=["negative", "positive"],
                                       references=[text]), out=tmp_path / "paper", adapter=tiny, progress=False)
    assert paper.summary["pairs"] == 16 and paper.summary["target_prompts"] == 1  # 4-layer model: 0..3 squared
    assert (paper.summary["source_pass"], paper.summary["stop"], paper.summary["cut"]) == ("after-block-0", "paper",
                                                                                           "paper")


def test_spearman_over_synthetic_checkpoints_has_the_known_rho():
    """Five checkpoints whose scores rank 1,3,2,5,4 against accuracy: rho = 1 - 6*4/(5*24) = 0.8 for every score;
    reversed scores give -1, and a constant score has no rho (NaN)."""
    acc = [0.5, 0.6, 0.7, 0.8, 0.9]
    up, down, flat = [0.1, 0.3, 0.2, 0.5, 0.4], [0.9, 0.7, 0.5, 0.3, 0.1], [0.2] * 5

    def ck(i, v):
        return {"accuracy": acc[i], "best": {m: {"score": v} for m in ("class_rate", "rouge1", "similarity")},
                **{k: v for k in SCORES if not k.startswith("best.")}}

    for scores, rho in ((up, 0.8), (down, -1.0)):
        c = correlations([ck(i, v) for i, v in enumerate(scores)])
        assert set(c) == set(SCORES)
        for key in SCORES:
            assert c[key]["spearman"] == pytest.approx(rho, abs=1e-12) and c[key]["n"] == 5, key
    assert math.isnan(correlations([ck(i, v) for i, v in enumerate(flat)])["class_rate_mean"]["spearman"])
