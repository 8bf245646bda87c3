"""RLPrompt policy dynamics without a task: rollouts and soft Q-learning updates only, no task-model scoring.

--reward zero: every shaped reward is 0, so whatever the policy learns comes from the loss and the initial
values; if it collapses onto one token, the collapse seen in real runs needs no reward to happen.
--reward word: a cheap stand-in reward (mean cosine of the prompt tokens to a word's embedding), shaped like
RLPrompt's, to see whether a setting lets the reward steer the policy at all. Prints one JSON row per step
(entropy, distinct prompts among K, share of the commonest token, reward share of the gradient, greedy prompt).

    python benchmarks/rlprompt_dynamics.py --lr 1e-3 --steps 15 --out dyn-1e-3.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from softscope.engine.models import lm_logits, load_model, token_embeddings
from softscope.methods.rlprompt import PromptPolicy, RLPromptConfig, policy_update, shape_rewards


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=256)
    ap.add_argument("--grad-clip", type=float, default=5.0)
    ap.add_argument("--polyak", type=float, default=1e-3)
    ap.add_argument("--reward", choices=["zero", "word"], default="zero",
                    help="zero: every shaped reward 0; word: mean cosine of the prompt's token embeddings to --word, "
                         "z-scored and mapped like real rewards (a reward that costs no task scoring)")
    ap.add_argument("--word", default=" great")
    ap.add_argument("--shaping-max", type=float, default=5.0, help="shaped reward = z-score x this (paper: 5)")
    ap.add_argument("--value-offset", choices=["none", "uniform"], default="none",
                    help="none (RLPrompt's code; the figures of results/rlprompt.md sections 2-3) or uniform")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    adapter = load_model(a.model)
    cfg = RLPromptConfig(lr=a.lr, tokens=a.tokens, prompts_per_step=a.prompts, top_k=a.top_k,
                         grad_clip=a.grad_clip, target_polyak=a.polyak,
                         value_offset=a.value_offset)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    policy = PromptPolicy(adapter, cfg.hidden)
    target = copy.deepcopy(policy.mlp).requires_grad_(False)
    opt = torch.optim.Adam(policy.mlp.parameters(), lr=cfg.lr)
    E = token_embeddings(adapter).detach().float()
    w = E[adapter.encode(a.word)].mean(0)
    cos = torch.nn.functional.cosine_similarity(E, w[None], dim=-1)

    def word_reward(ids: torch.Tensor) -> torch.Tensor:
        return cos[ids.cpu()].mean(-1)

    with torch.no_grad():  # the untrained policy: which tokens its top-k holds, and how much the MLP bias decides it
        g0, s0 = policy.rollout(1, cfg.tokens, None, greedy=True)
        top = policy.q_values(s0[0]).topk(cfg.top_k, -1).indices  # [L, k]
        bias_only = lm_logits(adapter, policy.mlp[-1].bias[None]).float()[0].topk(cfg.top_k).indices
        init = {"greedy": adapter.decode(g0[0].tolist()),
                "top10_at_start": [adapter.decode([i]) for i in top[0, :10].tolist()],
                "topk_overlap_with_bias_only_ranking": [len(set(t.tolist()) & set(bias_only.tolist())) for t in top],
                "topk_overlap_first_vs_later_states": [len(set(top[0].tolist()) & set(t.tolist())) for t in top[1:]]}
    print(json.dumps({"init": init}, ensure_ascii=False), flush=True)
    rows = []
    for step in range(a.steps):
        t0 = time.time()
        ids, states = policy.rollout(cfg.prompts_per_step, cfg.tokens, gen, cfg.top_k)
        r = word_reward(ids)
        shaped = torch.zeros(len(ids)) if a.reward == "zero" else shape_rewards(r, True, (0.0, 1.0), (0.0, a.shaping_max))
        upd = policy_update(policy, target, opt, cfg, ids, states, shaped)
        greedy = policy.rollout(1, cfg.tokens, None, greedy=True)[0][0]
        row = {"step": step + 1, **upd, "word_reward": r.mean().item(), "greedy_word_reward": word_reward(greedy[None]).item(),
               "greedy": adapter.decode(greedy.tolist()), "sample": adapter.decode(ids[0].tolist()),
               "seconds": round(time.time() - t0, 2)}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "init": init, "rows": rows}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
