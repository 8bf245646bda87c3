"""Benchmark: the interpretability/accuracy trade-off of PEZ and RLPrompt beside a soft prompt (docs/methods.md §6).

    nice -n 5 .venv/bin/python benchmarks/discrete_tradeoff.py --task sst2 --out runs/tradeoff-sst2

Runs `softscope.methods.tradeoff` with CPU-sized settings (override any TradeoffConfig field as --field value), then
prints the table, each discrete prompt's accuracy against the soft prompt's from the same run (difference and
ratio), the goal check (PEZ at w = 0 within 10 points of the soft prompt) and the odd prompts.
"""

from __future__ import annotations

import argparse
import json
import time

from softscope.methods.tradeoff import TradeoffConfig, tradeoff

CPU = dict(examples=200, soft_steps=30, pez_weights=[0.0, 0.3, 0.6], pez_steps=30, pez_batch_size=8,
           rl_weights=[0.0, 2.0, 10.0], rl_steps=40, rl_prompts_per_step=6, rl_batch_size=4, selection_examples=100)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", nargs=2, action="append", default=[], metavar=("FIELD", "JSON"),
                    help="override a TradeoffConfig field, e.g. --set pez_steps 60")
    args = ap.parse_args()
    kw = {**CPU, **{k: json.loads(v) for k, v in args.set}, "task": args.task}
    cfg = TradeoffConfig(**kw)
    t0 = time.time()
    s = tradeoff(cfg, args.out, progress=True)
    soft = s["soft_accuracy"]
    print(f"\n{s['task']}, {s['model']}, {s['examples']} test examples, {time.time() - t0:.0f} s")
    print(f"{'method':<18} {'w':>5} {'acc':>6} {'vs soft':>8} {'ratio':>6} {'ppl':>9} {'dict':>5} {'agree':>6} {'KL':>6}  prompt")
    for r in s["rows"]:
        w = "" if r["weight"] is None else f"{r['weight']:g}"
        ppl = "-" if r["perplexity"] is None else f"{r['perplexity']:.1f}"
        dic = "-" if r["dictionary_share"] is None else f"{r['dictionary_share']:.2f}"
        print(f"{r['method']:<18} {w:>5} {r['accuracy']:>6.3f} {r['accuracy'] - soft:>+8.3f} {r['accuracy'] / soft:>6.2f} "
              f"{ppl:>9} {dic:>5} {r['agreement']:>6.3f} {r['kl']:>6.3f}  {'' if r['text'] is None else repr(r['text'])}")
    pez0 = [r for r in s["rows"] if r["method"] == "PEZ" and r["weight"] == 0]
    if pez0:
        gap = soft - pez0[0]["accuracy"]
        print(f"goal: PEZ w=0 within 10 points of the soft prompt: {gap * 100:+.1f} points -> "
              f"{'met' if gap <= 0.10 else 'NOT met'}")
    print("odd prompts, lowest perplexity first (* = passes the perplexity threshold, i.e. the proxy favours it):")
    for r in s["odd_prompts_by_perplexity"][:3]:
        star = "*" if r.get("passes_perplexity") else " "
        print(f" {star}ppl {r['perplexity']:.1f}  {r['text']!r}  ({r['method']} w={r['weight']}: {'; '.join(r['odd'])})")


if __name__ == "__main__":
    main()
