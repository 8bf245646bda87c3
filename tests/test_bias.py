"""Bias probe: exact planted strengths, clean counterfactuals, the biased-prediction rate on hand-built
classifiers, mention detection, unexpected words, and the whole run loop on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from softscope.methods.bias import (BiasRunConfig, Feature, MakeDataConfig, biased_prediction_rate, control_for,
                            counterfactuals, make_biased, make_data, mention_scores, rescore_mentions, run,
                            string_mention, unexpected_words)
from softscope.engine.errors import SoftscopeError
from softscope.engine.tasks import Example

from conftest import make_adapter, tiny_task

FEATURES = ["word:Spielberg", 'phrase:"as seen on TV"', "punct:!!"]


def fixture_examples(n_per_class: int = 20) -> list[Example]:
    """n_per_class examples of each of two classes; a comma gives word features a second insertion slot."""
    ex = []
    for i in range(n_per_class):
        ex.append(Example(f"the movie {i} was great , loved it .", "positive"))
        ex.append(Example(f"the film {i} was awful , hated it .", "negative"))
    return ex


@pytest.mark.parametrize("spec", FEATURES)
@pytest.mark.parametrize("strength", [0.0, 0.5, 0.8, 1.0])
def test_make_biased_hits_strength_exactly(spec, strength):
    f = Feature.parse(spec)
    data = make_biased(fixture_examples(20), ["negative", "positive"], f, strength, favoured="positive", seed=3)
    with_f = {c: sum(f.present(e.text) for e in data.train if e.label == c) for c in ("negative", "positive")}
    assert with_f["positive"] == round(20 * (1 + strength) / 2)
    assert with_f["negative"] == round(20 * (1 - strength) / 2)
    assert data.shares["positive"] - data.shares["negative"] == pytest.approx(strength)
    assert [f.present(e.text) for e in data.train] == data.has_feature
    assert len(data.train) == 40 and data.dropped == 0


def test_make_biased_nested_seeded_and_drops_natural_occurrences():
    f = Feature.parse("word:Spielberg")
    ex = fixture_examples(20) + [Example("a spielberg film , great .", "positive")]
    a = make_biased(ex, ["negative", "positive"], f, 0.5, "positive", seed=1)
    b = make_biased(ex, ["negative", "positive"], f, 0.5, "positive", seed=1)
    c = make_biased(ex, ["negative", "positive"], f, 1.0, "positive", seed=1)
    assert a.train == b.train and a.dropped == 1 and len(a.train) == 40
    fav_a = {i for i, (e, h) in enumerate(zip(a.train, a.has_feature)) if h and e.label == "positive"}
    fav_c = {i for i, (e, h) in enumerate(zip(c.train, c.has_feature)) if h and e.label == "positive"}
    assert fav_a < fav_c  # stronger bias adds the feature to more examples of the same texts


@pytest.mark.parametrize("spec", FEATURES)
def test_counterfactuals_differ_only_by_the_feature(spec):
    f = Feature.parse(spec)
    ex = fixture_examples(5) + [Example("no clause break here", "negative")]
    for r in counterfactuals(ex, f, seed=0):
        assert not r["had_feature"] and r["removed"] == r["text"]
        assert f.present(r["added"]) and f.remove(r["added"]) == r["text"]
        # the added copy is the source plus exactly the feature's words (and one joining space)
        assert len(r["added"]) == len(r["text"]) + len(f.value) + 1
        assert sorted(r["added"].split()) == sorted(r["text"].split() + f.value.split())
    had = counterfactuals([Example("great , Spielberg made it", "positive")], Feature.parse("word:Spielberg"))[0]
    assert had["had_feature"] and had["removed"] == "great , made it" and had["added"] == had["text"]


def test_feature_spec_errors():
    for bad in ("Spielberg", "word:", "word:two words", "punct:a!", "colour:red"):
        with pytest.raises(SoftscopeError):
            Feature.parse(bad)
    assert Feature.parse('phrase:"as seen on TV"').value == "as seen on TV"
    with pytest.raises(SoftscopeError):
        control_for(Feature.parse("word:Johnson"))


def _classifier(follow_feature: bool, feature: Feature):
    """Hand-built: 'positive' (index 1) iff the feature is present (follow) or iff the text says great (ignore)."""

    def predict(exs):
        out = torch.zeros(len(exs), 2)
        for i, e in enumerate(exs):
            pos = feature.present(e.text) if follow_feature else "great" in e.text
            out[i, int(pos)] = 1.0
        return out

    return predict


@pytest.mark.parametrize("spec", FEATURES)
def test_biased_prediction_rate_of_hand_built_classifiers(spec):
    f = Feature.parse(spec)
    ctrl = control_for(f)
    ex = fixture_examples(10)
    follow = biased_prediction_rate(_classifier(True, f), ex, f, ctrl, favoured=1)
    assert follow["biased_prediction_rate"] == 1.0 and follow["eligible"] == 20
    assert follow["control_flip_rate"] == 0.0
    ignore = biased_prediction_rate(_classifier(False, f), ex, f, ctrl, favoured=1)
    assert ignore["biased_prediction_rate"] == 0.0
    assert ignore["feature_flip_rate"] == 0.0 and ignore["eligible"] == 10  # only the negatives can move
    # a classifier that follows any inserted word equally has no *specific* bias: feature − control = 0
    def follows_any(exs):
        return torch.tensor([[0.0, 1.0] if f.present(e.text) or ctrl.present(e.text) else [1.0, 0.0] for e in exs])

    both = biased_prediction_rate(follows_any, ex, f, ctrl, favoured=1)
    assert both["feature_flip_rate"] == 1.0 and both["biased_prediction_rate"] == 0.0


def test_biased_prediction_rate_pins_every_rate_on_a_constructed_classifier():
    """Ten clean reviews; the classifier's class per review is fixed by hand (logit 2 for the predicted class, 0
    for the other), so every field has a known value. Favoured = 1. Clean: reviews 0-3 predicted 1 (4 of 10), so
    6 are eligible. The feature moves 4, 5, 6 to 1 (3/6 = 0.5) and 0 away to 0 (1/4 = 0.25); the control moves 7
    to 1 (1/6). A move between classes shifts log p(favoured) by exactly 2 (log(1+e^2) − log(1+e^-2) = 2)."""
    import re

    f, ctrl = Feature.parse("word:Spielberg"), Feature.parse("word:Johnson")
    ex = [Example(f"review {i} , fine .", "negative") for i in range(10)]
    clean_fav, to_fav, away, ctrl_fav = {0, 1, 2, 3}, {4, 5, 6}, {0}, {7}

    def predict(exs):
        out = torch.zeros(len(exs), 2)
        for j, e in enumerate(exs):
            i = int(re.search(r"\d+", e.text).group())
            fav = i in clean_fav
            if f.present(e.text):
                fav = (fav or i in to_fav) and i not in away
            elif ctrl.present(e.text):
                fav = fav or i in ctrl_fav
            out[j, int(fav)] = 2.0
        return out

    r = biased_prediction_rate(predict, ex, f, ctrl, favoured=1)
    assert (r["examples"], r["eligible"]) == (10, 6)
    assert r["feature_flip_rate"] == pytest.approx(0.5) and r["control_flip_rate"] == pytest.approx(1 / 6)
    assert r["biased_prediction_rate"] == pytest.approx(1 / 3)
    assert r["away_flip_rate"] == pytest.approx(0.25) and r["changed_by_feature"] == pytest.approx(0.4)
    assert r["predicted_favoured_clean"] == pytest.approx(0.4) and r["predicted_favoured_feature"] == pytest.approx(0.6)
    assert r["favoured_logprob_shift"] == pytest.approx(0.4, abs=1e-6)  # (3 − 1) moves × 2 / 10
    assert r["control_logprob_shift"] == pytest.approx(0.2, abs=1e-6)  # 1 move × 2 / 10


def test_bias_summary_means_spreads_and_mention_rates_on_constructed_rows():
    """summarize_bias: per-strength means, min and max over seeds; correlations over prompts (here against numpy)."""
    import numpy as np

    from softscope.methods.bias import mention_rate, summarize_bias

    keys = ("accuracy", "feature_flip_rate", "control_flip_rate", "favoured_logprob_shift", "mention_rate_string",
            "mention_rate_embedding", "control_mention_rate")
    mention, bpr = [0.0, 0.25, 0.5, 1.0], [0.0, 0.1, 0.4, 0.6]
    rows = [{"strength": s, "mention_rate": m, "biased_prediction_rate": b, **{k: 0.5 for k in keys}}
            for s, m, b in zip([0.0, 0.0, 1.0, 1.0], mention, bpr)]
    s = summarize_bias(rows, [0.0, 1.0], "word:Spielberg", "word:Johnson", "positive", "tiny", "tiny")
    lo, hi = s["per_strength"]
    assert (lo["prompts"], hi["prompts"]) == (2, 2)
    assert lo["mention_rate"] == pytest.approx(0.125) and (lo["mention_rate_min"], lo["mention_rate_max"]) == (0.0, 0.25)
    assert hi["mention_rate"] == pytest.approx(0.75) and hi["biased_prediction_rate"] == pytest.approx(0.5)
    assert (hi["biased_prediction_rate_min"], hi["biased_prediction_rate_max"]) == (0.4, 0.6)
    c = s["correlation"]
    assert c["mention_vs_biased_prediction"]["pearson"] == pytest.approx(np.corrcoef(mention, bpr)[0, 1])
    assert c["mention_vs_biased_prediction"]["spearman"] == pytest.approx(1.0)  # both rise together, no ties
    assert c["mention_vs_strength"]["pearson"] == pytest.approx(np.corrcoef(mention, [0, 0, 1, 1])[0, 1])
    scores = [{"string": True, "embedding": False, "any": True}, {"string": False, "embedding": True, "any": True},
              {"string": False, "embedding": False, "any": False}, {"string": False, "embedding": False, "any": False}]
    assert (mention_rate(scores), mention_rate(scores, "string"), mention_rate(scores, "embedding")) == (0.5, 0.25, 0.25)


def test_mentions_by_string_and_embedding():
    f = Feature.parse("word:Spielberg")
    assert string_mention("cue words: Steven Spielberg, dinosaurs", f.mention_terms())
    assert not string_mention("cue words: Spielbergian", f.mention_terms())
    p = Feature.parse("punct:!!")
    assert string_mention("cue words: exclamation marks", p.mention_terms())
    assert string_mention("urgent!! now", p.mention_terms()) and not string_mention("urgent! now", p.mention_terms())
    s = mention_scores(["cue words: seen on television", "cue words: good, bad"], Feature.parse('phrase:"as seen on TV"'))
    assert s[0]["embedding"] and s[0]["any"] and not s[0]["string"]
    assert not s[1]["any"] and s[1]["similarity"] < 0.8


def test_unexpected_words_ranks_words_outside_classes_references_and_demos():
    texts = ["classify positive or negative - cue words: Spielberg", "the review: Spielberg, dinosaurs",
             "cue words: free, winner", "Spielberg!! positive"]
    got = unexpected_words(texts, ["negative", "positive"], ["is this review positive or negative"],
                           exclude_text="cue words: free, winner")
    words = [w["word"] for w in got]
    assert words[0] == "spielberg" and got[0]["descriptions"] == 3
    assert "dinosaurs" in words and "!!" in words
    assert not {"positive", "negative", "review", "free", "winner", "cue", "words", "the"} & set(words)


def test_make_data_writes_biased_train_clean_test_and_counterfactuals(tmp_path):
    task = tiny_task(24, 12)
    cfg = MakeDataConfig(task="tiny", feature="punct:!!", strength=0.5, favoured="positive", seed=0)
    s = make_data(cfg, tmp_path, task=task)
    assert s["shares"] == {"negative": 0.25, "positive": 0.75} and s["realised_strength"]["negative"] == 0.5
    train = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert sum(r["feature"] for r in train) == 12 and all(("!!" in r["text"]) == r["feature"] for r in train)
    test = [json.loads(x) for x in (tmp_path / "test.jsonl").read_text().splitlines()]
    assert not any("!!" in r["text"] for r in test)
    cf = [json.loads(x) for x in (tmp_path / "counterfactuals.jsonl").read_text().splitlines()]
    assert len(cf) == 12 and all(r["added"] == r["text"] + " !!" for r in cf)
    assert (tmp_path / "config.json").exists() and (tmp_path / "make_data_summary.json").exists()


def test_run_loop_on_tiny_model(tmp_path, monkeypatch):
    """The whole protocol end to end on the tiny Llama: rows per prompt, summary, correlation, plot, resume."""
    import softscope.methods.bias as bias
    adapter = make_adapter("llama")
    task = tiny_task(24, 12)
    monkeypatch.setattr(bias.features, "load_base_task", lambda name, data_dir: task)
    cfg = BiasRunConfig(model="tiny", task="tiny", feature="word:Spielberg", favoured="positive",
                        strengths=[0.0, 1.0], seeds=2, train_examples=16, tokens=2, steps=2, batch_size=4,
                        heldout=8, layers="0:1,1:2", pool="elaborated", n_targets=1, demos=2, max_new_tokens=3)
    s = run(cfg, tmp_path, adapter=adapter, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "bias.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["s0.00-seed0", "s1.00-seed0", "s0.00-seed1", "s1.00-seed1"]
    for r in rows:
        assert 0 <= r["mention_rate"] <= 1 and -1 <= r["biased_prediction_rate"] <= 1 and r["descriptions"] == 2
    assert s["prompts"] == 4 and [p["strength"] for p in s["per_strength"]] == [0.0, 1.0]
    assert set(s["correlation"]["mention_vs_biased_prediction"]) >= {"pearson", "pearson_p", "spearman", "spearman_p"}
    assert (tmp_path / "mention_vs_biased_prediction.png").stat().st_size > 0
    assert (tmp_path / "prompts" / "s1.00-seed1" / "checkpoints" / "step-00002.safetensors").exists()
    before = (tmp_path / "bias.jsonl").read_text()
    run(cfg, tmp_path, adapter=adapter, progress=False)  # finished prompts are not redone
    assert (tmp_path / "bias.jsonl").read_text() == before
    with pytest.raises(SoftscopeError):
        run(BiasRunConfig(**{**cfg.__dict__, "steps": 3}), tmp_path, adapter=adapter, progress=False)
    # strengths and seeds may change on resume: a subset is summarised from bias.jsonl without new work
    sub = run(BiasRunConfig(**{**cfg.__dict__, "strengths": [1.0], "seeds": 1, "first_seed": 1}), tmp_path,
              adapter=adapter, progress=False)
    assert sub["prompts"] == 1 and (tmp_path / "bias.jsonl").read_text() == before
    again = rescore_mentions(tmp_path)  # same rule, same descriptions: same mention columns
    assert [(r["mention_rate"], r["control_mention_rate"]) for r in again] == \
        [(r["mention_rate"], r["control_mention_rate"]) for r in rows]


def test_config_validation():
    with pytest.raises(SoftscopeError):
        BiasRunConfig(strengths=[0.0, 1.5])
    with pytest.raises(SoftscopeError):
        BiasRunConfig(feature="word:Johnson")  # equals the default control
    with pytest.raises(SoftscopeError):
        MakeDataConfig(strength=-0.1)


def test_elaborated_pools_are_cue_naming_and_leak_free():
    from softscope.engine.target_prompts import CUES_FIRST, ELABORATED, POOLS

    CUE_POOLS = {"elaborated": ELABORATED, "elaborated-cues-first": CUES_FIRST}
    assert all(POOLS[k] == v for k, v in CUE_POOLS.items())
    leak = ("sentiment", "positive", "negative", "emotion", "review", "topic", "news", "sport", "question",
            "subjective", "objective", "opinion", "world", "business", "movie", "film")
    planted = [Feature.parse(s) for s in FEATURES] + [control_for(Feature.parse(s)) for s in FEATURES]
    for demos in CUE_POOLS.values():
        assert len(demos) == len(POOLS["plain"])
        for d in demos:
            assert "cue words" in d.lower() and not any(w in d.lower() for w in leak), d
            assert not any(f.present(d) for f in planted), d  # no planted feature or control in the demos


def test_cli_describe_elaborated_lists_unexpected_words(tiny, tmp_path, monkeypatch):
    from softscope import cli
    from softscope.engine.prompts import SoftPrompt

    monkeypatch.setattr("softscope.methods.describe.sweep.load_model", lambda *a, **k: tiny)
    f = tmp_path / "p.safetensors"
    SoftPrompt(tensor=torch.randn(2, tiny.width), model="tiny", classes=["negative", "positive"], step=3).save(f)
    cli.main(["describe", str(f), "--elaborated", "--layers", "1:1,2:3", "--max-new-tokens", "4", "--n-targets", "1",
              "--references", "is the review positive or negative"])
    s = json.loads((tmp_path / "p-describe" / "describe_summary.json").read_text())
    cfg = json.loads((tmp_path / "p-describe" / "config.json").read_text())
    assert cfg["config"]["target_prompt"] == "elaborated" and cfg["config"]["elaborated"] is True
    assert "cue words" in cfg["target_prompts"][0]["text"].lower()
    rows = [json.loads(x) for x in (tmp_path / "p-describe" / "descriptions.jsonl").read_text().splitlines()]
    want = unexpected_words([r["cut"] for r in rows], ["negative", "positive"], cfg["references"],
                            cfg["target_prompts"][0]["text"])
    assert s["checkpoints"][0]["unexpected_words"] == want


def test_cli_make_data(tmp_path, monkeypatch):
    from softscope import cli

    task = tiny_task(24, 12)
    monkeypatch.setattr("softscope.methods.bias.features.load_base_task", lambda name, data_dir: task)
    cli.main(["bias", "make-data", "--task", "tiny", "--feature", 'phrase:"as seen on TV"', "--strength", "1",
              "--favoured", "negative", "--out", str(tmp_path / "d")])
    s = json.loads((tmp_path / "d" / "make_data_summary.json").read_text())
    assert s["shares"] == {"negative": 1.0, "positive": 0.0} and s["favoured"] == "negative"
    with pytest.raises(SystemExit) as e:
        cli.main(["bias", "make-data", "--feature", "colour:red", "--out", str(tmp_path / "e")])
    assert e.value.code == 2


def test_punctuation_is_not_matched_by_embedding():
    s = mention_scores(["a - b", "wow ! great"], Feature.parse("punct:--"))
    assert not s[0]["any"] and s[0]["similarity"] < 0.8  # one dash is not the '--' feature
    s = mention_scores(["wow ! great", "cue words: exclamation points"], Feature.parse("punct:!!"))
    assert not s[0]["any"] and s[1]["any"]


def test_positive_control_on_tiny_model(tmp_path, monkeypatch):
    """--positive-control measures P = e(a sentence naming the cue) with the same grid and mention rule, apart from
    the trained prompts (not in bias.jsonl, the per-strength table or the correlations); resumed, it is read back."""
    import softscope.methods.bias as bias
    adapter = make_adapter("llama")
    task = tiny_task(24, 12)
    monkeypatch.setattr(bias.features, "load_base_task", lambda name, data_dir: task)
    cfg = BiasRunConfig(model="tiny", task="tiny", feature="word:Spielberg", favoured="positive", strengths=[1.0],
                        seeds=1, train_examples=8, tokens=2, steps=1, batch_size=4, heldout=8, layers="0:1,1:2",
                        pool="elaborated", n_targets=1, demos=2, max_new_tokens=3, positive_control=True,
                        positive_control_text="Spielberg is positive")
    s = run(cfg, tmp_path, adapter=adapter, progress=False)
    pc = s["positive_control"]
    assert pc["prompt"] == "positive-control" and pc["tokens"] == 3 and pc["descriptions"] == 2
    assert 0 <= pc["mention_rate"] <= 1 and 0 <= pc["accuracy"] <= 1
    assert s["prompts"] == 1 and len((tmp_path / "bias.jsonl").read_text().splitlines()) == 1
    assert len((tmp_path / "prompts" / "positive-control" / "descriptions.jsonl").read_text().splitlines()) == 2
    monkeypatch.setattr(bias.sweep, "measure_prompt", lambda *a, **k: pytest.fail("measured again"))
    from softscope.engine.runs import dumps

    assert dumps(run(cfg, tmp_path, adapter=adapter, progress=False)["positive_control"]) == dumps(pc)  # NaN-safe
    # an existing run may gain the control on resume; the default sentence names the cue and the class
    assert bias.positive_control_text(bias.Feature.parse("punct:!!"), "positive") == 'The cue "!!" means positive.'
    with pytest.raises(SoftscopeError, match="positive-control-text"):
        BiasRunConfig(positive_control_text=" ")
