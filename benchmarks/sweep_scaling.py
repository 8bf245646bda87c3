"""Sweep scaling on Ray: the same wayward sweep on a local Ray cluster with 1 worker vs 2 workers (1 torch thread
per unit), units per minute and their ratio, plus the driver's overhead per unit (no-op units).

    python benchmarks/sweep_scaling.py --units 8 --rounds 3 --json benchmarks/results/sweep_scaling.json

Each round starts a fresh cluster on loopback (127.0.0.2) (head + one more node, 1 CPU each; for "1 worker" only the head),
runs the sweep with --executor ray and tears the cluster down; the two sizes alternate within a round and the
ratio is taken inside the round. Model loading happens once per worker process and is timed separately (first
unit per worker), so units/minute is measured over the sweep after the workers are warm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402

from ray_cluster import start_cluster, stop_cluster  # noqa: E402
from softscope.engine.executor import ExecutorOptions, Unit, run_units  # noqa: E402
from softscope.engine.models import cpu_features  # noqa: E402
from softscope.methods.wayward import WaywardConfig, run_wayward  # noqa: E402

TARGETS = ["the cat sat on the mat", "print the list in python", "a quiet river at night", "open the door slowly",
           "sales rose in the third quarter", "the team won the final", "how to boil an egg", "rain is expected today",
           "she plays the violin", "the market closed lower", "a recipe for bread", "the train was late again"]


def noop(ctx, unit):
    return unit.key


def sweep_once(nodes: int, args, out: Path) -> dict:
    address, tmp = start_cluster(nodes=nodes, cpus_per_node=1, object_store_mb=150)
    try:
        import ray

        cfg = WaywardConfig(model=args.model, device="cpu", task="sst2", steps=args.steps, batch_size=4, lr=3e-2,
                            gamma=[0.0], test_examples=args.test_examples, target=TARGETS[:args.units],
                            executor="ray", ray_address=address, cpus_per_unit=1)
        # warm-up: one unit per worker loads the model; not counted
        warm = WaywardConfig(**{**cfg.__dict__, "target": TARGETS[-nodes:]})
        run_wayward(warm, out / f"warm-{nodes}", progress=False)
        t0 = time.perf_counter()
        run_wayward(cfg, out / f"sweep-{nodes}", progress=False)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        run_units([Unit(f"n{i}") for i in range(args.units)], noop, progress=False, log=lambda line: None,
                  options=ExecutorOptions(executor="ray", ray_address=address))
        overhead = (time.perf_counter() - t1) / args.units
        ray.shutdown()
    finally:
        stop_cluster(tmp)
    return {"nodes": nodes, "wall_s": wall, "units_per_min": 60 * args.units / wall, "driver_overhead_s": overhead}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--test-examples", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(f"CPU {cpu_features()} · torch {torch.__version__} · {args.units} units · load {os.getloadavg()}",
          flush=True)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)  # alternate which size goes first
            res = {n: sweep_once(n, args, Path(tmp) / f"r{r}") for n in order}
            ratio = res[2]["units_per_min"] / res[1]["units_per_min"]
            rounds.append({"round": r, "one": res[1], "two": res[2], "ratio": ratio, "load": os.getloadavg()})
            print(f"round {r}: 1 worker {res[1]['units_per_min']:.2f} units/min, 2 workers "
                  f"{res[2]['units_per_min']:.2f} units/min, ratio {ratio:.2f}; driver overhead/unit "
                  f"{res[1]['driver_overhead_s'] * 1000:.0f} / {res[2]['driver_overhead_s'] * 1000:.0f} ms; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    ratios = [r["ratio"] for r in rounds]
    summary = {"cpu": cpu_features(), "units": args.units, "steps": args.steps, "rounds": rounds,
               "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
               "driver_overhead_ms_median": 1000 * statistics.median(
                   [x[k]["driver_overhead_s"] for x in rounds for k in ("one", "two")])}
    print(f"ratio 2 vs 1 workers: median {summary['ratio_median']:.2f} (range {summary['ratio_min']:.2f}–"
          f"{summary['ratio_max']:.2f}); driver overhead {summary['driver_overhead_ms_median']:.0f} ms/unit")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
