"""The `--protocol cpu` table of results/wayward.md from one or more (partly finished) wayward sweeps: per target,
each γ's accuracy with its 95% Wilson interval and the drop acc(γ = 0) − acc(γ = 1e-2) with the paired test
(`engine.stats.compare_paired`: exact McNemar p and a paired bootstrap interval, the same rows
`softscope wayward-compare --per-target` reads).

    python benchmarks/wayward_cpu_table.py runs/wayward-cpu/sst2-smollm2 runs/wayward-cpu/sst2-smollm2-part2 \\
        --json benchmarks/results/wayward_cpu.json

Rows are grouped by (task, target), so sweeps of several tasks go in one table; each sweep's `--baseline-min`
comes from its own config.json unless --baseline-min overrides it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from softscope.engine.runs import read_jsonl
from softscope.engine.stats import compare_paired, wilson_interval


def _stop(row: dict) -> str:
    """Where early stopping ended the run, or that it ran to the step cap without stopping."""
    return str(row["stopped_at"]) if row.get("stopped_at") is not None else "no stop"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--gamma", type=float, default=0.01, help="the γ > 0 compared with γ = 0")
    ap.add_argument("--baseline-min", type=float, default=None, help="override every sweep's own --baseline-min")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    by_target: dict[tuple[str, str], dict] = {}
    baseline: dict[tuple[str, str], float] = {}
    for d in args.runs:
        cfg = json.loads((Path(d) / "config.json").read_text())["config"]
        for r in read_jsonl(Path(d) / "wayward.jsonl"):
            key = (r["task"], r["target"])
            by_target.setdefault(key, {})[r["gamma"]] = r
            baseline[key] = args.baseline_min if args.baseline_min is not None else cfg.get("baseline_min", 0.0)
    out = []
    lines = ["| task | target (tokens) | e(t) start acc | γ = 0 acc [95%] (stopped at) | γ = 1e-2 acc [95%] (stopped at) | "
             "γ = 1e-2 projection F1 | drop [95% paired], McNemar p | counts as within 2 points? |",
             "|---|---|---|---|---|---|---|---|"]
    for (task, target), g in by_target.items():
        if 0.0 not in g or args.gamma not in g:
            continue  # an unfinished target
        r0, r1 = g[0.0], g[args.gamma]
        a, b = [int(c) for c in r0["correct"]], [int(c) for c in r1["correct"]]
        c = compare_paired(a, b)
        ci0, ci1 = wilson_interval(sum(a), len(a)), wilson_interval(sum(b), len(b))
        b_min = baseline[(task, target)]
        base, within, reads = r0["accuracy"] >= b_min, c["ci95"][1] <= r0.get("within", 0.02), r1["f1"] >= 0.9
        verdict = ("yes" if base and within and reads else f"no: γ = 0 below {b_min}" if not base
                   else "no: projection F1 below 0.9" if not reads else "no: interval reaches past 2 points")
        out.append({"task": task, "target": target, "baseline_min": b_min, "text": r0["target_text"], "n_tokens": r0["n_tokens"],
                    "start_accuracy": r0["start_accuracy"], "acc_gamma0": r0["accuracy"], "ci_gamma0": ci0,
                    "stopped_gamma0": r0.get("stopped_at"), "acc_gamma001": r1["accuracy"], "ci_gamma001": ci1,
                    "stopped_gamma001": r1.get("stopped_at"), "f1_gamma001": r1["f1"],
                    "projection_gamma001": r1["projection"], "test_examples": len(a), "paired": c})
        lines.append(f"| {task} | {target} ({r0['n_tokens']}) | {r0['start_accuracy']:.3f} | {r0['accuracy']:.3f} "
                     f"[{ci0[0]:.3f}, {ci0[1]:.3f}] ({_stop(r0)}) | {r1['accuracy']:.3f} "
                     f"[{ci1[0]:.3f}, {ci1[1]:.3f}] ({_stop(r1)}) | {r1['f1']:.2f} | {c['diff']:+.3f} "
                     f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}], p = {c['p']:.2f} | {verdict} |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
