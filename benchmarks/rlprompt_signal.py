"""How much an RLPrompt step's reward says about its prompts, and whether a policy's choice depends on its state.

1. Reward signal against noise. N prompts are sampled from the untrained policy (the step-0 distribution, top-k
   256) and every one is scored on the same M training inputs: the matrix of RLPrompt gap rewards r[k, i]. A
   two-way decomposition r = μ + a_k + b_i + e_ki separates what a prompt is worth (a_k: its variance σ²_a is
   estimated without bias as (MS_prompt − MS_residual) / M) from the prompt × input noise (σ²_e = MS_residual).
   The input effect b_i cancels in RLPrompt's per-step z-score, because all K prompts of a step share the step's
   inputs. A step with B inputs then ranks its prompts by a_k + mean of B noises, so the correlation of the
   step's ranking with the prompts' worth is ρ(B) = sqrt(σ²_a / (σ²_a + σ²_e / B)), and the same for accuracy.
   Also the spread of the N prompts' accuracies: whether better prompts exist among the samples at all.
2. State dependence (--policy: a run's policy.safetensors). For sampled rollouts, the share of the MLP output's
   spread that varies between states, ‖o − ō‖ / ‖ō‖ averaged over states, the same for the LM states it reads,
   and how many states share the commonest greedy token. The untrained MLP is measured alongside.

    OMP_NUM_THREADS=1 python benchmarks/rlprompt_signal.py --prompts 32 --inputs 96 \\
        --policy runs/rl200/w-0/policy.safetensors --out benchmarks/results/rlprompt/signal.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from softscope.engine.models import load_model
from softscope.engine.runs import write_json
from softscope.engine.scoring import Scorer
from softscope.engine.tasks import holdout_task, load_task
from softscope.methods.rlprompt import PromptPolicy, gap_reward


def two_way(r: torch.Tensor) -> dict:
    """Two-way decomposition without replication of r [N prompts, M inputs]: prompt variance σ²_a (unbiased),
    residual variance σ²_e, and ρ(B), the correlation of a B-input step's prompt ranking with the prompts' worth."""
    N, M = r.shape
    r = r.double()
    mu = r.mean()
    a = r.mean(1) - mu
    b = r.mean(0) - mu
    e = r - mu - a[:, None] - b[None, :]
    ms_prompt = M * (a ** 2).sum() / (N - 1)
    ms_res = (e ** 2).sum() / ((N - 1) * (M - 1))
    var_a = max(float((ms_prompt - ms_res) / M), 0.0)
    var_e = float(ms_res)
    rho = {B: (math.sqrt(var_a / (var_a + var_e / B)) if var_a > 0 else 0.0) for B in (4, 8, 16, 32, 64)}
    return {"var_prompt": var_a, "var_noise": var_e, "sd_prompt": math.sqrt(var_a), "sd_noise": math.sqrt(var_e),
            "var_input": float(b.var()), "rho_by_batch": rho,
            "prompt_means": [round(float(x + mu), 4) for x in a]}


def spread(x: torch.Tensor) -> float:
    """Mean over rows of ‖x − mean‖ / ‖mean‖ (x [n, d]): 0 when every row is the same vector."""
    m = x.mean(0, keepdim=True)
    return float(((x - m).norm(dim=-1) / m.norm()).mean())


def state_dependence(policy: PromptPolicy, adapter, K: int, L: int, seed: int, top_k: int) -> dict:
    """Sampled rollouts of the policy: how much its MLP output and greedy choice vary between the states visited."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ids, states = policy.rollout(K, L, gen, top_k)
        s = states.reshape(-1, states.shape[-1]).float()
        o = policy.mlp(states).reshape(-1, states.shape[-1]).float()
        greedy = policy.q_values(states).argmax(-1).flatten()
        g_ids = policy.rollout(1, L, None, greedy=True)[0][0].tolist()
    common = int(greedy.bincount().max())
    return {"lm_state_spread": spread(s), "mlp_output_spread": spread(o),
            "states": int(greedy.numel()), "states_sharing_commonest_argmax": common,
            "commonest_argmax": adapter.decode([int(greedy.bincount().argmax())]),
            "distinct_argmax": len(set(greedy.tolist())), "greedy_prompt": adapter.decode(g_ids),
            "samples": [adapter.decode(r) for r in ids[:4].tolist()]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--prompts", type=int, default=32, help="N prompts sampled from the untrained policy")
    ap.add_argument("--inputs", type=int, default=96, help="M training inputs every prompt is scored on")
    ap.add_argument("--tokens", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=256)
    ap.add_argument("--policy", default="", help="a trained run's policy.safetensors (part 2); empty = skip part 2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    t0 = time.time()
    adapter = load_model(a.model)
    task = load_task(a.task)
    held, _ = holdout_task(task, 300, a.seed)
    scorer = Scorer(adapter, task)
    torch.manual_seed(a.seed)  # the same untrained policy as `softscope rlprompt --seed 0`
    policy = PromptPolicy(adapter)
    res: dict = {"model": adapter.name, "task": task.name, "seed": a.seed, "prompts": a.prompts, "inputs": a.inputs,
                 "cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    res["untrained"] = state_dependence(policy, adapter, 16, a.tokens, a.seed, a.top_k)
    if a.policy:
        trained = PromptPolicy(adapter)
        sd = load_file(a.policy)
        trained.mlp.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("mlp.")})
        res["trained"] = {"policy": a.policy, **state_dependence(trained, adapter, 16, a.tokens, a.seed, a.top_k)}
    print(json.dumps({k: res[k] for k in ("untrained", "trained") if k in res}, ensure_ascii=False, indent=1), flush=True)

    gen = torch.Generator().manual_seed(a.seed)
    ids, _ = policy.rollout(a.prompts, a.tokens, gen, a.top_k)
    rows = scorer.rows(held.train)
    pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(a.seed + 1))[:a.inputs].tolist()
    rows = [rows[i] for i in pick]
    labels = torch.tensor([r.label for r in rows])
    R, C = [], []
    with torch.no_grad():
        for k in range(a.prompts):
            lp = scorer.class_logprobs(adapter.embed(ids[k:k + 1]).expand(len(rows), -1, -1), rows).cpu().float()
            R.append(gap_reward(lp, labels))
            C.append((lp.argmax(-1) == labels).float())
            print(f"prompt {k + 1}/{a.prompts} reward {R[-1].mean():+.1f} acc {C[-1].mean():.3f} "
                  f"{adapter.decode(ids[k].tolist())!r}", flush=True)
    R, C = torch.stack(R), torch.stack(C)
    acc = C.mean(1)
    res["reward"] = two_way(R)
    res["accuracy"] = {**two_way(C), "min": float(acc.min()), "median": float(acc.median()), "max": float(acc.max())}
    res["sampled_prompts"] = [adapter.decode(r) for r in ids.tolist()]
    res["seconds"] = round(time.time() - t0, 1)
    for k in ("reward", "accuracy"):
        v = res[k]
        print(f"{k}: sd prompt {v['sd_prompt']:.3f}  sd noise {v['sd_noise']:.3f}  rho(B) "
              + " ".join(f"{B}:{r:.2f}" for B, r in v["rho_by_batch"].items()))
    print(f"accuracy of the {a.prompts} prompts on {a.inputs} inputs: min {acc.min():.3f} median {acc.median():.3f} "
          f"max {acc.max():.3f}")
    if a.out:
        write_json(Path(a.out), res)


if __name__ == "__main__":
    main()
