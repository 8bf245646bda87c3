"""Every config that loads a model forwards the model options (model, device, dtype, trust_remote_code), both to
the loader and into every sub-config it builds (a training run inside bias, wayward, PEZ, the trade-off)."""

from __future__ import annotations

import dataclasses

import pytest

import softscope.engine.models as models
from softscope.engine.config import ModelOptions, PromptModelOptions, TrainConfig
from softscope.methods.bias import BiasRunConfig
from softscope.methods.describe import DescribeConfig
from softscope.methods.explain import ExplainConfig
from softscope.methods.interpret import InterpretConfig
from softscope.methods.pez import PezConfig
from softscope.methods.rlprompt import RLPromptConfig
from softscope.methods.tradeoff import TradeoffConfig
from softscope.methods.wayward import WaywardConfig

MODEL = dict(model="some/model", device="cpu", dtype="float32", trust_remote_code=True)
LOADERS = [TrainConfig, WaywardConfig, PezConfig, RLPromptConfig, TradeoffConfig, BiasRunConfig, DescribeConfig,
           ExplainConfig, InterpretConfig]


def test_every_model_loading_config_composes_one_option_group():
    """The four model options are declared once (ModelOptions / PromptModelOptions), never re-declared."""
    for cls in LOADERS:
        assert issubclass(cls, (ModelOptions, PromptModelOptions)), cls.__name__
        names = [f.name for f in dataclasses.fields(cls)]
        for opt in MODEL:
            assert names.count(opt) == 1, (cls.__name__, opt)


@pytest.mark.parametrize("cls", LOADERS, ids=lambda c: c.__name__)
def test_the_loader_gets_all_four_model_options(cls, monkeypatch):
    seen = {}
    monkeypatch.setattr(models, "load_model", lambda name, **kw: seen.update(model=name, **kw))
    models.load_model_for(cls(**MODEL))
    assert seen == MODEL


def test_sub_configs_carry_the_model_options():
    from softscope.methods import bias, tradeoff, wayward

    subs = [bias._bias_train_cfg(BiasRunConfig(**MODEL), seed=3),
            wayward._wayward_train_cfg(WaywardConfig(**MODEL, target=["a b"]), 3, 0),
            *tradeoff.sub_configs(TradeoffConfig(**MODEL))]
    from softscope.engine.config import subconfig

    subs.append(subconfig(TrainConfig, PezConfig(**MODEL), init="vocab", final_eval="none"))  # pez_start's
    for sub in subs:
        assert {k: getattr(sub, k) for k in MODEL} == MODEL, type(sub).__name__


def test_bias_training_config_is_the_one_it_was_plus_trust_remote_code():
    """The by-name copy gives the training config the hand-written one gave (same fingerprints for old runs)."""
    cfg = BiasRunConfig(model="m", device="cpu", dtype="float32", tokens=5, steps=12, batch_size=4, lr=0.05,
                        init="random", checkpoint_eval=9)
    from softscope.methods.bias import _bias_train_cfg

    old = TrainConfig(model="m", device="cpu", dtype="float32", task=cfg.task, data_dir=cfg.data_dir, tokens=5,
                      steps=12, batch_size=4, lr=0.05, init="random", checkpoint_every=12, eval_examples=9,
                      final_eval="none", seed=7)
    assert _bias_train_cfg(cfg, 7) == old


def test_protocol_presets_name_only_config_fields():
    from softscope.engine.config import TrainConfig, check_presets
    from softscope.methods.describe.config import PAPER, DescribeConfig
    from softscope.methods.wayward.config import PROTOCOLS, WaywardConfig

    check_presets(WaywardConfig, PROTOCOLS)  # what the modules run at import
    check_presets(DescribeConfig, {"paper": PAPER})
    with pytest.raises(TypeError, match="TrainConfig preset 'fast' names no field stepz"):
        check_presets(TrainConfig, {"fast": {"steps": 1, "stepz": 2}})
