"""K prompts trained together (training.train_many, one batched forward per step) vs one after another (train).

    .venv/bin/python benchmarks/wayward_batch.py [--model smollm2-135m] [--task sst2] [--k 8] [--steps 6]

The K prompts are the waywardness case: one target text, K values of γ, same init and batch stream, so both
paths do the same arithmetic and must end at the same prompts (the max difference is printed). "One after
another" is K calls of `train` exactly as `softscope wayward --no-batched` makes them (each also evaluates 8
examples at step 0 and at the end); `--pure` adds K calls of train_many with K = 1 (the loop alone, no evals).
Prints seconds of each and the ratio; --repeats alternates the order to spread out load from other processes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from softscope.engine.config import TrainConfig
from softscope.engine.models import cpu_features, load_model
from softscope.engine.training import init_prompt, train, train_many
from softscope.methods.wayward import PAPER_GAMMAS, WaywardConfig, _task_for, _wayward_train_cfg, distance_term, target_embeddings

TARGET = "Write down the conclusion you can reach by combining the given Fact 1 and Fact 2."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--pure", action="store_true", help="also time K × train_many(K=1)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--bf16", action="store_true", help="train under bf16 autocast (as the quick protocol does)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    adapter = load_model(a.model, device="cpu")
    wcfg = WaywardConfig(model=a.model, device="cpu", task=a.task, steps=a.steps, batch_size=a.batch_size,
                         lr=3e-2, gamma=[0.0], bf16_autocast=a.bf16)
    task = _task_for(wcfg)
    ids, e_t = target_embeddings(adapter, TARGET)
    cfg: TrainConfig = _wayward_train_cfg(wcfg, len(ids), wcfg.seed)
    gammas = (PAPER_GAMMAS * (a.k // len(PAPER_GAMMAS) + 1))[: a.k]
    P0 = init_prompt(adapter, len(ids), "vocab", torch.Generator().manual_seed(0))
    print(f"{adapter.name} · {task.name} · K={a.k} prompts of n={len(ids)} tokens · {a.steps} steps · batch "
          f"{a.batch_size} · {'bf16 autocast' if a.bf16 else 'float32'} · torch threads {torch.get_num_threads()} · CPU "
          f"{cpu_features()}",
          flush=True)

    def batched():
        Ps, _ = train_many(cfg, P0.unsqueeze(0).repeat(a.k, 1, 1), adapter=adapter, task=task,
                           loss_terms=[distance_term(gammas, e_t)], progress=False)
        return Ps

    def one_by_one():
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            for k, g in enumerate(gammas):
                res = train(cfg, f"{tmp}/{k}", adapter=adapter, task=task, loss_terms=[distance_term(g, e_t)],
                            init=P0, progress=False)
                out.append(res.prompt.tensor)
        return torch.stack(out)

    def pure():
        return torch.cat([train_many(cfg, P0[None], adapter=adapter, task=task,
                                     loss_terms=[distance_term([g], e_t)], progress=False)[0] for g in gammas])

    paths = {"batched": batched, "sequential": one_by_one}
    if a.pure:
        paths["sequential_loop_only"] = pure
    times = {k: [] for k in paths}
    result = {}
    for r in range(a.repeats):
        order = list(paths) if r % 2 == 0 else list(reversed(paths))
        for name in order:
            t = time.perf_counter()
            result[name] = paths[name]()
            times[name].append(time.perf_counter() - t)
            print(f"  repeat {r}: {name:<22} {times[name][-1]:8.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = (result["batched"] - result["sequential"]).abs().max().item()
    print(f"\nsequential (K × train): {med['sequential']:.1f} s   batched (train_many, K={a.k}): {med['batched']:.1f} s"
          f"   speed-up sequential/batched: {med['sequential'] / med['batched']:.2f}×")
    if "sequential_loop_only" in med:
        print(f"sequential loop only (K × train_many K=1): {med['sequential_loop_only']:.1f} s   "
              f"ratio to batched: {med['sequential_loop_only'] / med['batched']:.2f}×")
    moved = (result["batched"] - P0).abs().max().item()
    print(f"max |prompt difference| batched vs sequential: {diff:.2e} (prompts moved up to {moved:.3f} from the init)")


if __name__ == "__main__":
    main()
