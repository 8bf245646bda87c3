"""RLPrompt: the reward against hand-computed cases, shaping, the soft Q-learning loss, the policy and a tiny run."""

import math

import pytest
import torch

from conftest import tiny_task
from softscope.engine.errors import SoftscopeError
from softscope.engine.metrics import token_nll
from softscope.engine.models import lm_logits
from softscope.methods.rlprompt import (PromptPolicy, RLPromptConfig, gap_reward, prompt_nll, rlprompt, shape_rewards,
                                sql_loss)
from softscope.engine.runs import read_json, read_jsonl


def test_gap_reward_hand_computed():
    lp = torch.tensor([[0.7, 0.3], [0.7, 0.3], [0.5, 0.5]]).log()
    # right by 0.4 -> 0.4*200; wrong by 0.4 -> -0.4*180; a tie is not "correct" -> 0*180
    assert gap_reward(lp, torch.tensor([0, 1, 0])).tolist() == pytest.approx([80.0, -72.0, 0.0], abs=1e-4)
    lp3 = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]).log()
    assert gap_reward(lp3, torch.tensor([2, 0])).tolist() == pytest.approx([-54.0, 40.0], abs=1e-4)
    # probabilities are over the label words only: unnormalised log-likelihoods give the same reward
    assert gap_reward(lp3 - 3.0, torch.tensor([2, 0])).tolist() == pytest.approx([-54.0, 40.0], abs=1e-4)
    assert gap_reward(lp3, torch.tensor([1, 1]), correct_coeff=1, incorrect_coeff=2).tolist() == \
        pytest.approx([-0.4, -0.4], abs=1e-5)


def test_shaping_hand_computed():
    r = torch.tensor([1.0, 2.0, 3.0])
    std = math.sqrt(2 / 3)  # population std, as RLPrompt
    z = [(-1 / (std + 1e-4)) * 5, 0.0, (1 / (std + 1e-4)) * 5]  # z-score, then [0, 1] -> [0, 5]
    assert shape_rewards(r).tolist() == pytest.approx(z, rel=1e-5)
    assert shape_rewards(r, zscore=False, old=(0, 100), new=(-10, 10)).tolist() == pytest.approx([-9.8, -9.6, -9.4])


def test_sql_loss_against_a_loop():
    g = torch.Generator().manual_seed(0)
    K, L, V = 3, 4, 7
    q = torch.randn(K, L, V, generator=g)
    qt = torch.randn(K, L, V, generator=g)
    a = torch.randint(0, V, (K, L), generator=g)
    r = torch.randn(K, generator=g)
    total = 0.0
    for k in range(K):
        A = [q[k, t, a[k, t]] - q[k, t].logsumexp(0) for t in range(L)]
        Vt = [qt[k, t].logsumexp(0) for t in range(L)]
        for t in range(L):
            tgt2 = (Vt[t + 1] - Vt[t]) if t < L - 1 else (r[k] - Vt[t])
            v2 = (A[t] - tgt2) ** 2
            v3 = (sum(A[t:]) - (r[k] - Vt[t])) ** 2
            total += (v2 + v3) / 2
    assert sql_loss(q, qt, a, r).item() == pytest.approx(total.item() / K, rel=1e-5)


def test_policy_starts_uniform_and_fluent_mode_restricts(tiny):
    pol = PromptPolicy(tiny, hidden=16)
    ids, states = pol.rollout(4, 3, torch.Generator().manual_seed(0), top_k=5)
    assert ids.shape == (4, 3) and states.shape == (4, 3, tiny.width)
    q = pol.q_values(states)
    assert q.std().item() < 1e-3  # tiny init: near-uniform Q over the vocabulary
    ids, states = pol.rollout(4, 3, torch.Generator().manual_seed(1), fluent_top_k=2)
    base = lm_logits(tiny, states).float()
    allowed = base.topk(2, -1).indices
    assert (allowed == ids[..., None]).any(-1).all()


def test_prompt_nll_is_token_nll(tiny):
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    want = [sum(token_nll(tiny, r.tolist())) / 3 for r in ids]
    assert prompt_nll(tiny, ids).tolist() == pytest.approx(want, abs=1e-4)


def test_tiny_run_writes_everything(tiny, tmp_path):
    cfg = RLPromptConfig(tokens=2, steps=3, prompts_per_step=3, batch_size=2, hidden=16, top_k=8, eval_every=2,
                         eval_examples=4, holdout=6, test_examples=4, fluency_weight=[0, 1])
    s = rlprompt(cfg, tmp_path, adapter=tiny, task=tiny_task(), progress=False)
    assert [r["fluency_weight"] for r in s["runs"]] == [0.0, 1.0]
    run = read_json(tmp_path / "w-1" / "rlprompt_summary.json")
    assert len(run["ids"]) == 2 and [c["step"] for c in run["curve"]] == [0, 2, 3]
    assert len(run["reward_curve"]) == 3 and run["test_examples"] == 4
    train = [m for m in read_jsonl(tmp_path / "w-1" / "metrics.jsonl") if m["event"] == "train"]
    assert all(m["prompt_nll"] is not None for m in train)  # λ > 0: the NLL enters every reward
    for f in ("rlprompt_curves.png", "rlprompt_rewards.png", "rlprompt.jsonl", "config.json"):
        assert (tmp_path / f).exists()
    from safetensors.torch import load_file  # the policy is saved as safetensors (no pickle)

    policy = load_file(str(tmp_path / "w-1" / "policy.safetensors"))
    assert any(k.startswith("mlp.") for k in policy) and any(k.startswith("target.") for k in policy)


def test_config_validation():
    with pytest.raises(SoftscopeError):
        RLPromptConfig(prompts_per_step=1)
    with pytest.raises(SoftscopeError):
        RLPromptConfig(fluency_weight=[-1])
    assert RLPromptConfig(fluency_weight=["0", "2"], shaping_new=["0", "5"]).fluency_weight == [0.0, 2.0]
