"""Patchscopes generation, three ways on the same layer pairs: the authors' procedure, per-pair cached generation,
and softscope's batched engine — same text required, paired ratios reported.

    python benchmarks/describe_grid.py --pairs 4 --max-new-tokens 8 --rounds 5 --threads 2 \\
        --json benchmarks/results/describe_grid.json

1. reference: the no-cache oracle — one pair at a time, no KV cache, the whole sequence re-run with the patch
   applied at every new token (`engine.patching.reference_generate_ids`; the InSPEcT authors' target side decodes
   this way, their source pass differs: docs/describe.md).
2. cached: what a user would write today (the Patchscopes reference code does this) — one pair at a time,
   Hugging Face `generate` with the KV cache, a forward hook writing the source states during the prefill only.
   Written here independently of the engine.
3. engine: `engine.patching.patch_generate_ids` — all pairs in one batched, KV-cached generate, the shared target
   prefix run once, patched during the prefill only.
All decode greedily and stop at EOS. A round runs the three in a rotating order on every pair; ratios are taken
inside a round (per pair for reference / cached, per round for the per-pair means vs the engine), and the report
gives their median and min–max. The prompt is a checkpoint (--checkpoint) or a vocabulary-sampled 7-token prompt
(seed 0): speed and equality do not depend on what the prompt encodes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch


def summarize(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def cached_generate_ids(adapter, target_ids, positions, source, layer, max_new_tokens):
    """Per-pair baseline: HF generate with the KV cache; a hook patches block `layer` in the prefill only."""
    pos = torch.as_tensor(list(positions))
    n = len(target_ids)

    def hook(module, args, out):
        h = out[0] if isinstance(out, tuple) else out
        if h.shape[1] != n:  # decode steps: the cache already carries the patched states
            return None
        h = h.clone()
        h[0, pos] = source.to(h.dtype)
        return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h

    handle = adapter.blocks[layer].register_forward_hook(hook)
    try:
        ids = torch.tensor([list(target_ids)], device=adapter.device)
        with torch.no_grad():
            out = adapter.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=max_new_tokens, use_cache=True, eos_token_id=adapter.eos_id,
                                         pad_token_id=adapter.tokenizer.pad_token_id or adapter.eos_id,
                                         temperature=None, top_p=None, top_k=None)
    finally:
        handle.remove()
    new = out[0, n:].tolist()
    return new[: new.index(adapter.eos_id)] if adapter.eos_id in new else new


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--checkpoint", default=None, help="prompt file (default: a vocabulary-sampled 7-token prompt)")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads, pinned")
    ap.add_argument("--json", default=None, help="write the figures here too")
    args = ap.parse_args(argv)
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parent))
    from provenance import finish_record, start_record

    prov = start_record("benchmarks/describe_grid.py", list(argv if argv is not None else _sys.argv[1:]))
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    from softscope.engine.models import cpu_features, load_model
    from softscope.engine.patching import layer_pairs, patch_generate_ids, reference_generate_ids, source_states
    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.target_prompts import build
    from softscope.engine.training import init_prompt

    machine = cpu_features()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    adapter = load_model(args.model, device="cpu", dtype="float32")
    if args.checkpoint:
        prompt = SoftPrompt.load(args.checkpoint).tensor
    else:
        prompt = init_prompt(adapter, 7, "vocab", torch.Generator().manual_seed(0))
    target = build(adapter, "plain", prompt.shape[0], seed=0)
    pairs = sorted(random.Random(0).sample(layer_pairs("all", adapter.n_layers), args.pairs))
    S = source_states(adapter, prompt)
    T = args.max_new_tokens
    pos = target.placeholder_positions

    def engine():
        src = torch.stack([S[s] for s, _ in pairs])
        return patch_generate_ids(adapter, target.ids, pos, src, [t for _, t in pairs], max_new_tokens=T)

    def timed_per_pair(fn_one):
        ids, secs = [], []
        for s, t in pairs:
            t0 = time.perf_counter()
            ids.append(fn_one(s, t))
            secs.append(time.perf_counter() - t0)
        return ids, secs

    def run_engine():
        t0 = time.perf_counter()
        ids = engine()
        return ids, [(time.perf_counter() - t0) / len(pairs)] * len(pairs)

    ways = {
        "reference": lambda: timed_per_pair(
            lambda s, t: reference_generate_ids(adapter, target.ids, pos, S[s], t, max_new_tokens=T)),
        "cached": lambda: timed_per_pair(lambda s, t: cached_generate_ids(adapter, target.ids, pos, S[s], t, T)),
        "engine": run_engine,
    }

    engine()  # warm-up (allocations), not timed
    cached_generate_ids(adapter, target.ids, pos, S[pairs[0][0]], pairs[0][1], 2)
    names = list(ways)
    secs = {k: [] for k in names}  # per round: per-pair seconds
    texts = {k: None for k in names}
    stable = True
    for r in range(args.rounds):
        for k in names[r % 3:] + names[: r % 3]:
            ids, s = ways[k]()
            if texts[k] is not None and ids != texts[k]:
                stable = False
            texts[k] = ids
            secs[k].append(s)
        print(f"round {r + 1}: " + "  ".join(f"{k} {sum(secs[k][-1]):.1f}s" for k in names), flush=True)

    equal = {f"{a} == {b}": [x == y for x, y in zip(texts[a], texts[b])]
             for a, b in (("reference", "cached"), ("reference", "engine"), ("cached", "engine"))}
    per_pair = {k: [sum(v) / len(v) for v in secs[k]] for k in names}  # per round: mean seconds per pair
    ratios = {
        "reference / engine (per round)": summarize([a / b for a, b in zip(per_pair["reference"], per_pair["engine"])]),
        "cached / engine (per round)": summarize([a / b for a, b in zip(per_pair["cached"], per_pair["engine"])]),
        "reference / cached (per round)": summarize([a / b for a, b in zip(per_pair["reference"], per_pair["cached"])]),
        "reference / cached (per pair and round)": summarize(
            [a / b for ra, rb in zip(secs["reference"], secs["cached"]) for a, b in zip(ra, rb)]),
    }
    gen = sum(map(len, texts["reference"])) / len(pairs)
    print(f"\n{len(pairs)} layer pairs, {T} new tokens max ({gen:.1f} generated on average), target prompt "
          f"{len(target.ids)} tokens, {args.rounds} rounds")
    print(f"{'way':<10} {'s per pair: median':>19} {'min–max':>15}")
    for k in names:
        s = summarize(per_pair[k])
        print(f"{k:<10} {s['median']:>19.3f} {s['min']:>7.3f}–{s['max']:.3f}")
    print(f"\n{'paired ratio':<42} {'median':>8} {'min–max':>15}")
    for k, s in ratios.items():
        print(f"{k:<42} {s['median']:>7.1f}x {s['min']:>6.1f}–{s['max']:.1f}x")
    for k, v in equal.items():
        print(f"same greedy text, {k}: {sum(v)}/{len(v)} pairs")
    print(f"each way gave the same ids in every round: {stable}")

    if args.json:
        import sys

        from softscope.engine.runs import write_json

        write_json(args.json, {**finish_record(prov),
            "command": "python benchmarks/describe_grid.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "model": adapter.name, "checkpoint": args.checkpoint, "pairs": [list(p) for p in pairs], "n_pairs": len(pairs),
            "max_new_tokens": T, "generated_tokens_mean": gen, "target_tokens": len(target.ids),
            "rounds": args.rounds, "threads": torch.get_num_threads(), "machine": machine,
            "seconds_per_pair": secs, "per_pair_mean_by_round": per_pair,
            "ratios": ratios, "equal": equal, "equal_counts": {k: sum(v) for k, v in equal.items()},
            "stable_across_rounds": stable,
            "examples": [{"pair": list(pairs[i]), "text": adapter.decode(texts["engine"][i])} for i in range(0, len(pairs), 4)]})


if __name__ == "__main__":
    main()
