"""How close to the machine's limit? The CPU's own ceilings, the work of a training step and of an engine batch,
and the fraction of the ceiling softscope, PEFT and the Patchscopes engine reach — measured in one run.

    OMP_NUM_THREADS=2 python benchmarks/roofline.py --threads 2 --rounds 5 --json benchmarks/results/roofline.json

1. Ceilings, measured here: fp32 GEMM GFLOP/s at the model's shapes ([tokens × 576] × [576 × 1536] and friends;
   tokens = the training batch's positions, and 4 / 1 rows for decoding), bf16 GEMM where the CPU has native bf16,
   and memory bandwidth (a 256 MiB copy, bytes read + written).
2. Work, counted by torch's FlopCounterMode on the real calls: one softscope training step (forward + the
   input-gradient backward: the model's weights need no gradient), one PEFT step on the same batch, one engine batch
   (4 layer pairs, prefill + decode) and the per-pair cached baseline on the same 4 pairs. Bytes: every forward
   pass streams the model's weights once (they do not fit in cache), the lower bound of memory traffic.
3. Time, paired: each round times PEFT, softscope, engine and per-pair cached on the same inputs (rotating order);
   ratios are taken within a round, reported as median and min–max. Candidate gains are timed the same way
   against their plain path: 1 vs 2 threads for the step, bf16 autocast (AMX/AVX512-BF16 only) for the step,
   dropping finished rows in the engine (same text, checked).
4. Where the rest goes: the torch profiler's top operators (self CPU time) for one step and one engine batch.
The record carries the command, commit, date, CPU capability, threads and load before/after (provenance.py).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import finish_record, start_record  # noqa: E402


def median_time(fn, reps: int = 5, warm: int = 1) -> float:
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def gemm_gflops(m: int, k: int, n: int, dtype=torch.float32, reps: int = 7) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    inner = max(1, int(2e9 / (2 * m * k * n)))  # ~2 GFLOP per timed call, so tiny shapes are timed fairly

    def run():
        for _ in range(inner):
            torch.mm(a, b)
    return 2 * m * k * n * inner / median_time(run, reps) / 1e9


def bandwidth_gbs(mib: int = 256) -> float:
    x = torch.empty(mib * 2**20 // 4, dtype=torch.float32).fill_(1.0)
    y = torch.empty_like(x)
    return 2 * x.numel() * 4 / median_time(lambda: y.copy_(x), 5) / 1e9


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def top_ops(fn, k: int = 8) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    ev = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ev) or 1
    return [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3, 1),
             "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in ev[:k]]


def summarize(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "rounds": xs}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    rec = start_record("benchmarks/roofline.py", list(argv if argv is not None else sys.argv[1:]))

    from describe_grid import cached_generate_ids
    from train_step import make_peft

    from softscope.engine.models import cpu_features, load_model
    from softscope.engine.patching import layer_pairs, patch_generate_ids, source_states
    from softscope.engine.scoring import Scorer
    from softscope.engine.target_prompts import build
    from softscope.engine.tasks import load_task
    from softscope.engine.training import BatchStream, init_prompt

    feats = cpu_features()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {feats['cpu_capability']}, native bf16 "
          f"{feats['cpu_bf16']}, load {os.getloadavg()}", flush=True)
    adapter = load_model(args.model, device="cpu", dtype="float32")
    task = load_task("sst2")
    d = adapter.width
    cfg = adapter.model.config
    ffn = getattr(cfg, "intermediate_size", 4 * d)
    kv = d * getattr(cfg, "num_key_value_heads", cfg.num_attention_heads) // cfg.num_attention_heads
    vocab = adapter.vocab_size
    n_params = sum(p.numel() for p in adapter.model.parameters())
    emb_params = adapter.model.get_input_embeddings().weight.numel()
    weight_bytes = (n_params - emb_params) * 4  # the blocks' weights, streamed by every forward pass

    # ---- the inputs: one bucketed training batch; 4 layer pairs of a 7-token prompt ----------------------------
    scorer = Scorer(adapter, task, max_length=10_000)
    examples = task.subset("train", 48, seed=0)
    batch_idx = BatchStream(scorer, examples, args.batch_size, seed=1, bucket=True)(0)
    batch = [examples[i] for i in batch_idx]
    rows = scorer.rows(batch)
    P0 = init_prompt(adapter, 7, "vocab", torch.Generator().manual_seed(0))
    positions = sum(len(r.ids) for r in rows) + len(rows) * P0.shape[0]
    target = build(adapter, "plain", P0.shape[0], seed=0)
    pairs = sorted(random.Random(0).sample(layer_pairs("all", adapter.n_layers), args.pairs))
    S = source_states(adapter, P0)
    src = torch.stack([S[s] for s, _ in pairs])
    lay = [t for _, t in pairs]
    T = args.max_new_tokens

    # ---- 1. ceilings ------------------------------------------------------------------------------------------
    shapes = {"train qkv/o": (positions, d, d), "train kv": (positions, d, kv), "train up/gate": (positions, d, ffn),
              "train down": (positions, ffn, d), "decode up/gate, 4 rows": (4, d, ffn),
              "decode up/gate, 1 row": (1, d, ffn)}
    def measure_ceilings() -> tuple[dict, float]:
        c = {k: gemm_gflops(*s) for k, s in shapes.items()}
        if feats["cpu_bf16"]:
            c["train up/gate bf16"] = gemm_gflops(positions, d, ffn, torch.bfloat16)
        return c, bandwidth_gbs()

    # a ceiling is the best the machine does: measured before and after the timed rounds, the higher kept (anything
    # else running can only lower a measurement)
    ceil_before, bw_before = measure_ceilings()
    ceil, bw = dict(ceil_before), bw_before
    print("ceilings: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in ceil.items()) + f"; copy {bw:.1f} GB/s",
          flush=True)
    train_ceiling = ceil["train up/gate"]  # the shape that carries most of a step's FLOPs

    # ---- 2. the work ------------------------------------------------------------------------------------------
    peft_model, emb, peft_loss = make_peft(adapter, task, P0.shape[0])
    with torch.no_grad():
        emb.weight.copy_(P0)
    P = torch.nn.Parameter(P0.clone())
    opt_s, opt_p = torch.optim.AdamW([P], lr=1e-2), torch.optim.AdamW([emb.weight], lr=1e-2)

    def soft_step(sc=scorer):
        loss = sc.label_loss(P, sc.rows(batch))
        opt_s.zero_grad()
        loss.backward()
        opt_s.step()

    def peft_step():
        loss = peft_loss(batch)
        opt_p.zero_grad()
        loss.backward()
        opt_p.step()

    def engine(drop=True):
        return patch_generate_ids(adapter, target.ids, target.placeholder_positions, src, lay, max_new_tokens=T,
                                  drop_finished=drop)

    def cached():
        return [cached_generate_ids(adapter, target.ids, target.placeholder_positions, S[s], t, T) for s, t in pairs]

    flops = {"softscope step": count_flops(soft_step), "PEFT step": count_flops(peft_step),
             "engine batch": count_flops(engine), "per-pair cached": count_flops(cached)}
    texts = {"engine": engine(), "engine (no dropping)": engine(False), "cached": cached()}
    generated = [len(x) for x in texts["engine"]]
    # bytes lower bound: the blocks' weights once per forward pass (+ the head at label positions / every token)
    passes = {"softscope step": 2, "PEFT step": 2,  # forward + backward each stream the weights once
              "engine batch": 1 + max(generated),  # prefill + one pass per decoding step (shared prefix: ~0)
              "per-pair cached": sum(1 + g for g in (len(x) for x in texts["cached"]))}
    bytes_ = {k: passes[k] * weight_bytes for k in passes}
    print("work: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP / {bytes_[k] / 1e9:.2f} GB" for k, v in flops.items()),
          flush=True)

    # ---- 3. paired timing ------------------------------------------------------------------------------------
    bf16 = feats["cpu_bf16"]
    scorer_bf16 = Scorer(adapter, task, max_length=10_000, autocast_bf16=True) if bf16 else None
    scorer_noshare = Scorer(adapter, task, max_length=10_000, share_prefix=False)
    ways = {"PEFT step": peft_step, "softscope step": soft_step,
            "softscope step, no shared prefix": lambda: soft_step(scorer_noshare), "engine batch": lambda: engine(True),
            "engine batch, rows decoded to the end": lambda: engine(False), "per-pair cached": cached}
    if bf16:
        scorer_bf16_plain = Scorer(adapter, task, max_length=10_000, autocast_bf16=True)
        scorer_bf16_plain.cache_bf16_weights = False  # the plain path: autocast re-casts every weight at every call
        ways["softscope step, bf16 autocast"] = lambda: soft_step(scorer_bf16)
        ways["softscope step, bf16 autocast, weights re-cast per call"] = lambda: soft_step(scorer_bf16_plain)
    for fn in ways.values():
        fn()  # warm-up
    secs = {k: [] for k in ways}
    one_thread = []
    names = list(ways)
    for r in range(args.rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t = time.perf_counter()
            ways[k]()
            secs[k].append(time.perf_counter() - t)
        torch.set_num_threads(1)  # the thread setting, paired in the same round
        t = time.perf_counter()
        soft_step()
        one_thread.append(time.perf_counter() - t)
        torch.set_num_threads(args.threads)
        print(f"round {r + 1}: " + "  ".join(f"{k} {secs[k][-1]:.2f}s" for k in names) +
              f"  softscope step at 1 thread {one_thread[-1]:.2f}s", flush=True)
    secs["softscope step, 1 thread"] = one_thread

    ceil_after, bw_after = measure_ceilings()
    ceil = {k: max(ceil_before[k], ceil_after[k]) for k in ceil_before}
    bw = max(bw_before, bw_after)
    train_ceiling = ceil["train up/gate"]
    print("ceilings after: " + ", ".join(f"{k} {v:.0f}" for k, v in ceil_after.items()) + f"; copy {bw_after:.1f} GB/s",
          flush=True)

    def ratio(a, b):
        return summarize([x / y for x, y in zip(secs[a], secs[b])])

    ratios = {"PEFT / softscope (step)": ratio("PEFT step", "softscope step"),
              "per-pair cached / engine": ratio("per-pair cached", "engine batch"),
              "engine decoded to the end / engine dropping finished rows":
                  ratio("engine batch, rows decoded to the end", "engine batch"),
              "1 thread / 2 threads (softscope step)": ratio("softscope step, 1 thread", "softscope step"),
              "no shared prefix / shared prefix (softscope step)": ratio("softscope step, no shared prefix",
                                                                         "softscope step")}
    if bf16:
        ratios["float32 / bf16 autocast (softscope step)"] = ratio("softscope step", "softscope step, bf16 autocast")
        ratios["bf16 weights re-cast per call / bf16 weight copies (softscope step)"] = ratio(
            "softscope step, bf16 autocast, weights re-cast per call", "softscope step, bf16 autocast")
        ratios["PEFT float32 / softscope bf16 autocast (step, each at its best here)"] = ratio(
            "PEFT step", "softscope step, bf16 autocast")

    # ---- roofline table --------------------------------------------------------------------------------------
    table = {}
    for k in ("softscope step", "PEFT step", "engine batch", "per-pair cached"):
        t = statistics.median(secs[k])
        achieved = flops[k] / t / 1e9
        compute_ceiling = train_ceiling  # the machine's fp32 GEMM peak (decode shapes reach far less: ceilings)
        # the roofline: time can be no less than the compute time at the ceiling nor the weight-streaming time
        floor_s = max(flops[k] / (train_ceiling * 1e9), bytes_[k] / (bw * 1e9))
        table[k] = {"seconds": t, "gflop": flops[k] / 1e9, "gbytes_weights": bytes_[k] / 1e9,
                    "achieved_gflops": achieved, "gemm_ceiling_gflops_at_its_shape": compute_ceiling,
                    "fraction_of_gemm_ceiling": achieved / compute_ceiling,
                    "roofline_floor_s": floor_s, "fraction_of_roofline": floor_s / t}
    bounds = {
        "step: PEFT time / softscope at its roofline floor": table["PEFT step"]["seconds"]
        / table["softscope step"]["roofline_floor_s"],
        "step: FLOP ratio PEFT / softscope": flops["PEFT step"] / flops["softscope step"],
        "engine: per-pair cached time / engine at its roofline floor": table["per-pair cached"]["seconds"]
        / table["engine batch"]["roofline_floor_s"],
        "engine: weight passes per-pair cached / engine": passes["per-pair cached"] / passes["engine batch"],
    }
    profile = {"softscope step": top_ops(soft_step), "PEFT step": top_ops(peft_step),
               "engine batch": top_ops(lambda: engine(True))}
    if bf16:
        profile["softscope step, bf16 autocast"] = top_ops(lambda: soft_step(scorer_bf16))

    print(f"\n{'':<18}{'s':>8}{'GFLOP':>8}{'GB':>7}{'GFLOP/s':>9}{'ceiling':>9}{'of ceil':>9}{'floor s':>9}"
          f"{'of roof':>9}")
    for k, v in table.items():
        print(f"{k:<18}{v['seconds']:>8.3f}{v['gflop']:>8.1f}{v['gbytes_weights']:>7.2f}{v['achieved_gflops']:>9.1f}"
              f"{v['gemm_ceiling_gflops_at_its_shape']:>9.1f}{v['fraction_of_gemm_ceiling']:>9.2f}"
              f"{v['roofline_floor_s']:>9.3f}{v['fraction_of_roofline']:>9.2f}")
    print("\npaired ratios (median [min–max] over rounds):")
    for k, v in ratios.items():
        print(f"  {k:<60} {v['median']:.2f}x [{v['min']:.2f}–{v['max']:.2f}]")
    print("bounds: " + "; ".join(f"{k} {v:.2f}x" for k, v in bounds.items()))
    same = texts["engine"] == texts["engine (no dropping)"]
    same_cached = sum(a == b for a, b in zip(texts["engine"], texts["cached"]))
    print(f"engine text with and without dropping finished rows identical: {same}; engine == cached on "
          f"{same_cached}/{len(pairs)} pairs; tokens generated per pair {generated}")
    for k, ops in profile.items():
        print(f"top ops, {k}: " + ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in ops[:6]))

    rec.update(model=adapter.name, cpu=feats, threads=args.threads, batch_size=args.batch_size,
               batch_positions=positions, pairs=[list(p) for p in pairs], max_new_tokens=T,
               tokens_generated=generated, model_shape={"width": d, "ffn": ffn, "kv_width": kv, "vocab": vocab,
                                                        "layers": adapter.n_layers, "params": n_params},
               ceilings_gflops=ceil, bandwidth_gbs=bw, ceilings_before=ceil_before, ceilings_after=ceil_after,
               bandwidth_before_after=[bw_before, bw_after], flops=flops, weight_bytes_lower_bound=bytes_,
               seconds=secs, ratios=ratios, roofline=table, bounds=bounds, profile=profile,
               same_text_dropping=same, engine_equals_cached=same_cached)
    finish_record(rec)
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(rec, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
