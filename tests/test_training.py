"""The prompt-tuning loop: learns, is deterministic, checkpoints with accuracy, resumes bit-for-bit after a kill."""

import pytest
import torch

from softscope.engine.config import TrainConfig
from softscope.engine.errors import SoftscopeError
from softscope.engine.prompts import SoftPrompt
from softscope.engine.runs import read_json, read_jsonl
from softscope.engine.training import LossTerm, init_prompt, list_checkpoints, train
from softscope.engine.models import token_embeddings

from conftest import tiny_task


def cfg(**kw):
    base = dict(task="tiny", tokens=3, steps=12, batch_size=4, lr=3e-2, checkpoint_every=4, eval_examples=0,
                final_eval="full", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_training_lowers_loss_and_writes_run_dir(tiny, tmp_path):
    res = train(cfg(steps=30, checkpoint_every=10), tmp_path / "run", adapter=tiny, task=tiny_task(), progress=False)
    run = tmp_path / "run"
    for f in ("config.json", "metrics.jsonl", "prompt.safetensors", "prompt.json", "train_summary.json", "state.safetensors",
              "run.json"):
        assert (run / f).exists(), f
    steps = [int(p.stem.split("-")[1]) for p in list_checkpoints(run)]
    assert steps == [0, 10, 20, 30]
    for p in list_checkpoints(run):
        assert SoftPrompt.load(p).accuracy is not None
    m = [r for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "train"]
    assert len(m) == 30
    assert sum(r["loss"] for r in m[-5:]) / 5 < sum(r["loss"] for r in m[:5]) / 5
    assert res.final_accuracy is not None and read_json(run / "config.json")["config"]["tokens"] == 3


def test_same_seed_same_prompt(tiny, tmp_path):
    a = train(cfg(), tmp_path / "a", adapter=tiny, task=tiny_task(), progress=False)
    b = train(cfg(), tmp_path / "b", adapter=tiny, task=tiny_task(), progress=False)
    c = train(cfg(seed=1), tmp_path / "c", adapter=tiny, task=tiny_task(), progress=False)
    assert torch.equal(a.prompt.tensor, b.prompt.tensor)
    assert not torch.equal(a.prompt.tensor, c.prompt.tensor)


def test_existing_run_needs_resume(tiny, tmp_path):
    train(cfg(steps=2), tmp_path / "r", adapter=tiny, task=tiny_task(), progress=False)
    with pytest.raises(SoftscopeError, match="--resume"):
        train(cfg(steps=2), tmp_path / "r", adapter=tiny, task=tiny_task(), progress=False)


def test_init_matches_embedding_scale(tiny):
    E = token_embeddings(tiny)
    g = torch.Generator().manual_seed(0)
    for how in ("vocab", "random"):
        P = init_prompt(tiny, 50, how, g)
        assert 0.5 < P.norm(dim=-1).mean() / E.norm(dim=-1).mean() < 2.0, how
    P = init_prompt(tiny, 4, "text", g, "the movie")
    assert torch.allclose(P[0], E[tiny.encode("the")[0]])


def test_loss_term_is_applied(tiny, tmp_path):
    target = torch.zeros(3, tiny.width)
    far = train(cfg(steps=10), tmp_path / "a", adapter=tiny, task=tiny_task(), progress=False)
    near = train(cfg(steps=10), tmp_path / "b", adapter=tiny, task=tiny_task(), progress=False,
                 loss_terms=[LossTerm("dist", lambda P: 10.0 * ((P - target) ** 2).sum(-1).mean())])
    assert near.prompt.tensor.norm() < far.prompt.tensor.norm()
    assert "dist" in read_jsonl(tmp_path / "b" / "metrics.jsonl")[-2]
