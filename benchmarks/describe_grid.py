"""Patchscopes engine vs the reference procedure on one SST-2 checkpoint of the default model.

    .venv/bin/python benchmarks/describe_grid.py                  # 32 pairs: engine vs reference, same run
    .venv/bin/python benchmarks/describe_grid.py --memory         # + peak memory, 1 vs 10 checkpoints
    .venv/bin/python benchmarks/describe_grid.py --full-grid      # + the full 27 x 27 grid with the engine

Reference = the slow no-cache oracle (the InSPEcT authors' target side decodes this way; their source pass differs,
see docs/inspect.md): one layer pair at a time, no KV cache, the whole sequence re-run
with the patch applied at every new token. Engine = `softscope.engine.patching.patch_generate_ids`: all pairs in one
batched, KV-cached generate, patched during prefill only. Both decode greedily for up to 60 new tokens and stop
at the tokenizer's EOS. The engine is timed before and after the reference (the machine is shared, so load
drifts); the ratio uses the mean of the two. Results go to benchmarks/runs/describe_grid.json.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "runs" / "inspect" / "sst2"
OUT = ROOT / "benchmarks" / "runs" / "describe_grid.json"


def _setup(checkpoint: str | None, threads: int):
    from softscope.engine.models import load_model
    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.target_prompts import build
    from softscope.engine.training import list_checkpoints

    torch.set_num_threads(threads)
    path = Path(checkpoint).resolve() if checkpoint else list_checkpoints(RUN)[-1]
    adapter = load_model("smollm2-135m", device="cpu")
    prompt = SoftPrompt.load(path)
    target = build(adapter, "plain", prompt.n_tokens, seed=0)
    return adapter, prompt, target, path


def _engine(adapter, prompt, target, pairs, tokens, batch_size=64):
    from softscope.engine.patching import patch_generate_ids, source_states

    t = time.perf_counter()
    S = source_states(adapter, prompt.tensor)
    src = torch.stack([S[s] for s, _ in pairs])
    ids = patch_generate_ids(adapter, target.ids, target.placeholder_positions, src, [t_ for _, t_ in pairs],
                             max_new_tokens=tokens, batch_size=batch_size)
    return ids, time.perf_counter() - t


def _save(res: dict) -> None:
    from softscope.engine.runs import write_json

    write_json(OUT, res)


def compare(args, res: dict) -> None:
    from softscope.engine.patching import layer_pairs, reference_generate_ids, source_states

    adapter, prompt, target, path = _setup(args.checkpoint, args.threads)
    grid = layer_pairs("all", adapter.n_layers)
    pairs = sorted(random.Random(0).sample(grid, args.pairs))
    res.update(checkpoint=str(path.relative_to(ROOT)), checkpoint_step=prompt.step,
               checkpoint_accuracy=prompt.accuracy, pairs=args.pairs, max_new_tokens=args.max_new_tokens,
               target_prompt=target.text, target_tokens=len(target.ids), threads=args.threads)
    ids_a, t_a = _engine(adapter, prompt, target, pairs, args.max_new_tokens)
    print(f"engine: {args.pairs} pairs in {t_a:.1f} s", flush=True)
    S = source_states(adapter, prompt.tensor)
    ref, t_ref = [], []
    for k, (s, t) in enumerate(pairs):
        if args.reference_budget and sum(t_ref) > args.reference_budget:
            print(f"reference: time budget spent after {k} pairs", flush=True)
            break
        t0 = time.perf_counter()
        ref.append(reference_generate_ids(adapter, target.ids, target.placeholder_positions, S[s], t,
                                          max_new_tokens=args.max_new_tokens))
        t_ref.append(time.perf_counter() - t0)
        print(f"reference pair {k + 1}/{len(pairs)} ({s}->{t}): {t_ref[-1]:.1f} s", flush=True)
        res["reference_done"] = k + 1
        res["reference_seconds_so_far"] = sum(t_ref)
        _save(res)
    res.update(engine_seconds_first=t_a, reference_seconds=t_ref,
               reference_equal=[ids_a[i] == r for i, r in enumerate(ref)])
    _save(res)
    print(f"reference == engine for each compared pair: {res['reference_equal']}", flush=True)
    ids_b, t_b = _engine(adapter, prompt, target, pairs, args.max_new_tokens)
    print(f"engine again: {t_b:.1f} s", flush=True)
    differ = [i for i, (a, b) in enumerate(zip(ids_a, ref)) if a != b]
    engine_pp = (t_a + t_b) / 2 / len(pairs)
    ref_pp = sum(t_ref) / len(ref)
    res.update(engine_seconds=[t_a, t_b], engine_seconds_per_pair=engine_pp, reference_seconds_per_pair=ref_pp,
               speedup=ref_pp / engine_pp, differing_pairs=len(differ), reference_pairs=len(ref),
               differing_examples=[{"pair": pairs[i], "engine": adapter.decode(ids_a[i]),
                                    "reference": adapter.decode(ref[i])} for i in differ[:3]],
               engine_runs_agree=ids_a == ids_b,
               generated_tokens_mean=sum(map(len, ref)) / len(ref),
               examples=[{"pair": pairs[i], "text": adapter.decode(ref[i])} for i in range(0, len(ref), 8)])
    _save(res)
    print(f"seconds per pair: engine {engine_pp:.3f}, reference {ref_pp:.2f}; speedup {ref_pp / engine_pp:.1f}x; "
          f"pairs whose greedy text differs: {len(differ)}/{len(ref)} compared", flush=True)


def full_grid(args, res: dict) -> None:
    from softscope.engine.patching import layer_pairs

    adapter, prompt, target, _ = _setup(args.checkpoint, args.threads)
    pairs = layer_pairs("all", adapter.n_layers)
    timed = pairs[: 64 * args.full_grid_batches] if args.full_grid_batches else pairs
    _, t = _engine(adapter, prompt, target, timed, args.max_new_tokens)
    full = t * len(pairs) / len(timed)
    res["full_grid"] = {"pairs": len(pairs), "timed_pairs": len(timed), "seconds_timed": t,
                        "seconds_full_grid": full, "extrapolated": len(timed) < len(pairs),
                        "seconds_per_pair": t / len(timed), "max_new_tokens": args.max_new_tokens}
    _save(res)
    print(f"full grid: {len(pairs)} pairs, {'extrapolated from ' + str(len(timed)) + ' timed: ' if len(timed) < len(pairs) else ''}"
          f"{full:.0f} s ({t / len(timed):.3f} s per pair)", flush=True)


def _memory_child(k: int, threads: int) -> None:
    """One process: describe k checkpoints one after another; print peak RSS before and after."""
    from softscope.methods.describe import describe_prompt
    from softscope.engine.patching import layer_pairs
    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.training import list_checkpoints

    adapter, prompt, target, _ = _setup(None, threads)
    files = (list_checkpoints(RUN) * 10)[:k]
    pairs = layer_pairs("every:8", adapter.n_layers)  # 16 pairs, 10 tokens: memory, not speed
    describe_prompt(adapter, prompt.tensor, pairs[:2], [target], max_new_tokens=2)  # warm-up allocations
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    for f in files:
        describe_prompt(adapter, SoftPrompt.load(f).tensor, pairs, [target], max_new_tokens=10)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"checkpoints": k, "peak_rss_mb": peak / 1024, "after_load_rss_mb": base / 1024,
                      "seconds": time.perf_counter() - t, "pairs": len(pairs)}))


def memory(args, res: dict) -> None:
    out = []
    for k in (1, 10):
        p = subprocess.run([sys.executable, __file__, "--memory-child", str(k), "--threads", str(args.threads)],
                           capture_output=True, text=True, check=True)
        out.append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(f"memory: {out[-1]}", flush=True)
    res["memory"] = out
    _save(res)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="prompt file (default: the last SST-2 experiment checkpoint)")
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the 2-core machine is shared)")
    ap.add_argument("--memory", action="store_true", help="also peak memory for 1 and 10 checkpoints")
    ap.add_argument("--full-grid", action="store_true", help="also time the full grid with the engine")
    ap.add_argument("--reference-budget", type=float, default=0,
                    help="stop the reference after this many seconds (0 = all pairs); the report says how many ran")
    ap.add_argument("--full-grid-batches", type=int, default=0,
                    help="time only this many 64-pair batches of the full grid and extrapolate (0 = all)")
    ap.add_argument("--skip-compare", action="store_true", help="keep the comparison already in the JSON")
    ap.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        return _memory_child(args.memory_child, args.threads)
    res = json.loads(OUT.read_text()) if OUT.exists() and args.skip_compare else {}
    if not args.skip_compare:
        compare(args, res)
    if args.memory:
        memory(args, res)
    if args.full_grid:
        full_grid(args, res)


if __name__ == "__main__":
    main()
