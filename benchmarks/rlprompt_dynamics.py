"""RLPrompt policy dynamics without a task: rollouts and soft Q-learning updates only, with every shaped reward 0.

Whatever the policy learns here comes from the loss and the initial values, not from the reward: if it
collapses onto one token, the collapse seen in real runs needs no reward to happen. Prints one JSON row per
step (entropy, distinct prompts among K, share of the commonest token, greedy prompt).

    python benchmarks/rlprompt_dynamics.py --lr 1e-3 --steps 15 --out dyn-1e-3.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from softscope.engine.models import load_model
from softscope.methods.rlprompt import PromptPolicy, RLPromptConfig, policy_update


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
    ap.add_argument("--reward", choices=["zero", "noise"], default="zero",
                    help="zero: every shaped reward 0; noise: z-scored Gaussian noise mapped like real rewards")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    adapter = load_model(a.model)
    cfg = RLPromptConfig(lr=a.lr, tokens=a.tokens, prompts_per_step=a.prompts, top_k=a.top_k,
                         grad_clip=a.grad_clip, target_polyak=a.polyak)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    policy = PromptPolicy(adapter, cfg.hidden)
    target = copy.deepcopy(policy.mlp).requires_grad_(False)
    opt = torch.optim.Adam(policy.mlp.parameters(), lr=cfg.lr)
    rows = []
    for step in range(a.steps):
        t0 = time.time()
        ids, states = policy.rollout(cfg.prompts_per_step, cfg.tokens, gen, cfg.top_k)
        if a.reward == "zero":
            shaped = torch.zeros(cfg.prompts_per_step)
        else:
            z = torch.randn(cfg.prompts_per_step, generator=gen)
            shaped = (z - z.mean()) / (z.std(unbiased=False) + 1e-4) * 5.0
        upd = policy_update(policy, target, opt, cfg, ids, states, shaped)
        greedy = policy.rollout(1, cfg.tokens, None, greedy=True)[0][0].tolist()
        row = {"step": step + 1, **upd, "greedy": adapter.decode(greedy), "sample": adapter.decode(ids[0].tolist()),
               "seconds": round(time.time() - t0, 2)}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
