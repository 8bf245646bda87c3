"""RLPrompt: the reward against hand-computed cases, shaping, the soft Q-learning loss, the policy and a tiny run."""

import copy
import math

import pytest
import torch

from conftest import tiny_task
from softscope.engine.errors import SoftscopeError
from softscope.engine.scoring import token_nll
from softscope.engine.models import lm_logits
from softscope.methods.rlprompt import (PromptPolicy, RLPromptConfig, gap_reward, mean_token_nll, rlprompt, shape_rewards,
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


def test_mean_token_nll_is_token_nll(tiny):
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    want = [sum(token_nll(tiny, r.tolist())[0].tolist()) / 3 for r in ids]
    assert mean_token_nll(tiny, ids).tolist() == pytest.approx(want, abs=1e-4)


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


# ---- soft Q-learning against the soft Bellman equation (computed here by dynamic programming) ---------------
def _soft_optimal_q(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal soft Q of a 2-step episode with terminal reward r[a1, a2], by backward induction:
    Q2(a1, a2) = r(a1, a2); V2(a1) = log Σ exp Q2(a1, ·); Q1(a1) = V2(a1)."""
    q2 = r.clone()
    q1 = q2.logsumexp(-1)
    return q1, q2


def test_sql_loss_is_zero_at_the_soft_bellman_fixed_point_only():
    r = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0], [2.0, 2.0, -0.5]])  # V = 3 tokens, L = 2
    q1, q2 = _soft_optimal_q(r)
    seqs = [(a1, a2) for a1 in range(3) for a2 in range(3)]
    q = torch.stack([torch.stack([q1, q2[a1]]) for a1, _ in seqs])  # [9, 2, 3]: step-1 state, then state after a1
    acts = torch.tensor(seqs)
    rew = torch.tensor([float(r[a1, a2]) for a1, a2 in seqs])
    assert sql_loss(q, q, acts, rew).item() == pytest.approx(0.0, abs=1e-10)
    # the policy exp(Q − V) of the fixed point samples whole prompts with probability ∝ exp(r) (max-entropy RL)
    p = torch.stack([(q1 - q1.logsumexp(0))[a1] + (q2[a1] - q2[a1].logsumexp(0))[a2] for a1, a2 in seqs]).exp()
    assert p.tolist() == pytest.approx((rew.softmax(0)).tolist(), abs=1e-6)
    # a reward the values do not match, or values off the fixed point, cost something
    assert sql_loss(q, q, acts, rew + 1.0).item() > 0.5
    assert sql_loss(q + torch.tensor([0.0, 1.0, 0.0]), q, acts, rew).item() > 0.1


def test_sql_loss_hand_computed_one_step():
    # L = 1, two tokens, uniform Q = target = 0: A = −ln 2, V' = ln 2; reward 1: both terms (A − (r − V'))² = 1
    q = torch.zeros(1, 1, 2)
    assert sql_loss(q, q, torch.tensor([[0]]), torch.tensor([1.0])).item() == pytest.approx(1.0, abs=1e-6)
    # L = 2, Q = target = 0 everywhere, reward 0: v2 = (−ln2 − 0)² + (−ln2 − (0 − ln2))² = ln²2;
    # v3 = (−2 ln2 + ln2)² + (−ln2 + ln2)² = ln²2; loss = (v2 + v3)/2 summed = ln²2
    q = torch.zeros(1, 2, 2)
    assert sql_loss(q, q, torch.tensor([[0, 1]]), torch.tensor([0.0])).item() == \
        pytest.approx(math.log(2) ** 2, abs=1e-6)


# ---- the fluency weight reaches the reward and the update -----------------------------------------------------
def test_fluency_weight_changes_reward_and_update(tiny):
    import copy

    from softscope.engine.scoring import Scorer
    from softscope.methods.rlprompt import policy_update, prompt_rewards

    task = tiny_task()
    sc = Scorer(tiny, task)
    rows = sc.rows(task.train[:3])
    ids = torch.tensor([[5, 6], [7, 7], [9, 12]])
    r0 = prompt_rewards(RLPromptConfig(tokens=2, prompts_per_step=3), 0.0, tiny, sc, ids, rows)
    r2 = prompt_rewards(RLPromptConfig(tokens=2, prompts_per_step=3), 2.0, tiny, sc, ids, rows)
    nll = torch.tensor([sum(token_nll(tiny, r.tolist())[0].tolist()) / 2 for r in ids])  # mean token NLL after the start token
    assert r0["raw"].tolist() == pytest.approx(r0["task"].tolist(), abs=1e-6)
    assert r2["task"].tolist() == pytest.approx(r0["task"].tolist(), abs=1e-6)
    assert r2["raw"].tolist() == pytest.approx((r0["task"] - 2.0 * nll).tolist(), abs=1e-4)
    z = (r2["raw"] - r2["raw"].mean()) / (r2["raw"].std(unbiased=False) + 1e-4) * 50.0  # default map [0,1] -> [0,50]
    assert r2["shaped"].tolist() == pytest.approx(z.tolist(), abs=1e-4)
    assert (r2["shaped"] - r0["shaped"]).abs().max() > 0.1
    # the same policy, optimiser state and samples, updated with each reward: different weights after one step
    torch.manual_seed(0)
    pol = PromptPolicy(tiny, hidden=16)
    _, states = pol.rollout(3, 2, torch.Generator().manual_seed(0), top_k=5)
    cfg = RLPromptConfig(tokens=2, prompts_per_step=3, lr=1e-2)
    after = []
    for shaped in (r0["shaped"], r2["shaped"]):
        p = copy.deepcopy(pol)
        tgt = copy.deepcopy(p.mlp).requires_grad_(False)
        stats = policy_update(p, tgt, torch.optim.Adam(p.mlp.parameters(), lr=cfg.lr), cfg, ids, states, shaped)
        assert stats["reward_grad_ratio"] > 0
        after.append(torch.cat([x.flatten() for x in p.mlp.parameters()]))
    assert (after[0] - after[1]).abs().max() > 1e-4
    # when all K samples are one prompt the z-scored rewards are 0 whatever λ: the weight cannot act any more
    same = torch.tensor([[5, 6]] * 3)
    assert prompt_rewards(cfg, 2.0, tiny, sc, same, rows)["shaped"].abs().max() == 0


def test_rollout_states_are_the_lm_states_of_the_sampled_prefix(tiny):
    from softscope.engine.models import last_hidden

    pol = PromptPolicy(tiny, hidden=16)
    ids, states = pol.rollout(3, 4, torch.Generator().manual_seed(2), top_k=7)
    seq = torch.cat([torch.full((3, 1), tiny.doc_start_id), ids], 1)
    want = last_hidden(tiny.model.base_model(input_ids=seq[:, :-1], use_cache=False))
    assert torch.allclose(states, want, atol=1e-5)


def test_fluent_mode_masks_training_q_values(tiny):
    pol = PromptPolicy(tiny, hidden=16)
    ids, states = pol.rollout(2, 3, torch.Generator().manual_seed(0), fluent_top_k=3)
    q = pol.q_values(states, 3)
    assert torch.isfinite(q).sum(-1).eq(3).all()  # V = logsumexp over the 3 allowed tokens, as in sampling
    assert torch.isfinite(q.gather(-1, ids[..., None])).all()
    import copy

    from softscope.methods.rlprompt import policy_update

    cfg = RLPromptConfig(tokens=3, prompts_per_step=2, fluent=True, fluent_top_k=3)
    stats = policy_update(pol, copy.deepcopy(pol.mlp), torch.optim.Adam(pol.mlp.parameters()), cfg, ids, states,
                          torch.tensor([1.0, -1.0]))
    assert math.isfinite(stats["loss"]) and stats["entropy"] <= math.log(3) + 1e-5


def test_uniform_value_offset_makes_the_untrained_policy_the_zero_reward_fixed_point():
    """With uniform Q and no reward the plain loss pushes sampled tokens (ln²2 for L = 2, two tokens, see above);
    adding the uniform policy's value-to-go c = [ln 2, 0] to V' makes it exactly 0, while the reward still acts:
    the r-dependent part of the loss is unchanged (the loss is quadratic in its targets)."""
    from softscope.methods.rlprompt import uniform_value_offset

    q = torch.zeros(1, 2, 2)
    off = uniform_value_offset(q)
    assert off[0].tolist() == pytest.approx([math.log(2), 0.0], abs=1e-7)
    a = torch.tensor([[0, 1]])
    assert sql_loss(q, q, a, torch.tensor([0.0]), off).item() == pytest.approx(0.0, abs=1e-12)
    # reward 1: v2 last step (A − (1 − ln2))² = 1, v3 both steps 1 each -> (1 + 2)/2 = 1.5
    assert sql_loss(q, q, a, torch.tensor([1.0]), off).item() == pytest.approx(1.5, abs=1e-6)
    # masked tokens (fluent mode) count as unavailable: 3 of 4 tokens allowed at step 1, all 4 at step 2
    qm = torch.zeros(1, 3, 4)
    qm[0, 0, 3] = float("-inf")
    assert uniform_value_offset(qm)[0].tolist() == pytest.approx([2 * math.log(4), math.log(4), 0.0], abs=1e-6)


def test_value_offset_option_reaches_the_update(tiny):
    """--value-offset uniform changes the update at initialisation and the zero-reward gradient nearly vanishes."""
    from softscope.methods.rlprompt import policy_update

    grads = {}
    for mode in ("none", "uniform"):
        torch.manual_seed(0)
        pol = PromptPolicy(tiny, hidden=16)
        ids, states = pol.rollout(4, 3, torch.Generator().manual_seed(0), top_k=5)
        cfg = RLPromptConfig(value_offset=mode, grad_clip=0)
        stats = policy_update(pol, copy.deepcopy(pol.mlp), torch.optim.SGD(pol.mlp.parameters(), lr=0.0), cfg, ids,
                              states, torch.zeros(4))
        grads[mode] = stats["grad_norm"]
    assert grads["uniform"] < 1e-3 * grads["none"]
    with pytest.raises(SoftscopeError):
        RLPromptConfig(value_offset="zero")


def test_mlp_init_xavier_is_rlprompts_bound(tiny):
    """--mlp-init xavier draws weights uniformly within 1e-4 · sqrt(6 / (fan_in + fan_out)) (RLPrompt's code)."""
    torch.manual_seed(0)
    pol = PromptPolicy(tiny, hidden=16, init="xavier")
    for m in (pol.mlp[0], pol.mlp[2]):
        bound = 1e-4 * math.sqrt(6 / (m.in_features + m.out_features))
        assert m.weight.abs().max().item() <= bound and m.weight.abs().max().item() > 0.8 * bound
        assert m.bias.tolist() == pytest.approx([-1e-4] * m.out_features)
    assert RLPromptConfig(mlp_init="xavier").mlp_init == "xavier"
    with pytest.raises(SoftscopeError):
        RLPromptConfig(mlp_init="zeros")
