"""Sweep scaling on Ray: the same wayward sweep on a local Ray cluster with 1 worker vs 2 workers (1 torch thread
per unit), units per minute and their ratio, plus the driver's overhead per unit (no-op units).

    python benchmarks/sweep_scaling.py --units 8 --rounds 3 --json benchmarks/results/sweep_scaling.json

Each round starts a fresh cluster on loopback (127.0.0.2) (head + one more node, 1 CPU each; for "1 worker" only the head),
runs the sweep with --executor ray and tears the cluster down; the two sizes alternate within a round and the
ratio is taken inside the round. Model loading happens once per worker process and is timed separately (first
unit per worker), so units/minute is measured over the sweep after the workers are warm.

`--plain` adds the ceiling this machine allows without Ray, in the same rounds: the same units in 1 vs 2 plain
Python processes (spawned once, model loaded and warmed once, `--executor local`, 1 torch thread each), the
2-process arm splitting the units 4 + 4. Ray's efficiency = Ray's ratio / the plain ratio, per round. For each
Ray sweep it also records the CPU seconds taken by the cluster's own processes (raylet, GCS, the `ray::…Agent`
processes: everything of the cluster but its task workers) and by the driver, which compete with the units for
the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402

import psutil  # noqa: E402  (a Ray dependency)
from ray_cluster import cluster_pids, start_cluster, stop_cluster  # noqa: E402
from softscope.engine.executor import ExecutorOptions, Unit, run_units  # noqa: E402
from softscope.engine.models import cpu_features  # noqa: E402
from softscope.methods.wayward import WaywardConfig, run_wayward  # noqa: E402

TARGETS = ["the cat sat on the mat", "print the list in python", "a quiet river at night", "open the door slowly",
           "sales rose in the third quarter", "the team won the final", "how to boil an egg", "rain is expected today",
           "she plays the violin", "the market closed lower", "a recipe for bread", "the train was late again"]


def noop(ctx, unit):
    return unit.key


def _cluster_cpu(tmp: str) -> dict[int, tuple[str, float]]:
    """{pid: (name, CPU seconds so far)} of every process of the cluster whose temp dir is `tmp`."""
    out = {}
    for pid in cluster_pids(tmp):
        try:
            p = psutil.Process(pid)
            t = p.cpu_times()
            out[pid] = (p.name(), t.user + t.system)
        except psutil.Error:
            pass
    return out


def _daemon_cpu(before: dict, after: dict) -> float:
    """CPU seconds the cluster's non-worker processes used between two `_cluster_cpu` snapshots (task workers are
    `ray::<task>` / `ray::IDLE`; the dashboard and runtime-env agents, also `ray::…`, end in "Agent")."""
    return sum(sec - before.get(pid, (name, 0.0))[1] for pid, (name, sec) in after.items()
               if not name.startswith("ray::") or name.endswith("Agent"))


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
        cpu0, drv0 = _cluster_cpu(tmp), time.process_time()
        t0 = time.perf_counter()
        run_wayward(cfg, out / f"sweep-{nodes}", progress=False)
        wall = time.perf_counter() - t0
        daemon_s, driver_s = _daemon_cpu(cpu0, _cluster_cpu(tmp)), time.process_time() - drv0
        t1 = time.perf_counter()
        run_units([Unit(f"n{i}") for i in range(args.units)], noop, progress=False, log=lambda line: None,
                  options=ExecutorOptions(executor="ray", ray_address=address))
        overhead = (time.perf_counter() - t1) / args.units
        ray.shutdown()
    finally:
        stop_cluster(tmp)
    return {"nodes": nodes, "wall_s": wall, "units_per_min": 60 * args.units / wall, "driver_overhead_s": overhead,
            "cluster_daemon_cpu_s": daemon_s, "driver_cpu_s": driver_s}


def _plain_worker(conn, model: str, steps: int, test_examples: int, out: str) -> None:
    """A plain process: load the model and warm up once, then run the unit lists it is sent (local executor)."""
    torch.set_num_threads(1)
    n = 0

    def sweep(targets):
        nonlocal n
        n += 1
        cfg = WaywardConfig(model=model, device="cpu", task="sst2", steps=steps, batch_size=4, lr=3e-2, gamma=[0.0],
                            test_examples=test_examples, target=targets)
        run_wayward(cfg, Path(out) / f"{os.getpid()}-{n}", progress=False)

    sweep(TARGETS[-1:])
    conn.send("ready")
    while (targets := conn.recv()) is not None:
        t0 = time.perf_counter()
        sweep(targets)
        conn.send(time.perf_counter() - t0)


class PlainPool:
    """Two persistent plain processes (spawned, so no torch state is shared) for the no-Ray ceiling."""

    def __init__(self, args, out: Path):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(2):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_plain_worker, args=(b, args.model, args.steps, args.test_examples, str(out)))
            p.start()
            self.conns.append(a)
            self.procs.append(p)
        for c in self.conns:
            assert c.recv() == "ready"

    def sweep(self, procs: int, units: int) -> dict:
        targets = TARGETS[:units]
        parts = [targets] if procs == 1 else [targets[: units // 2], targets[units // 2:]]
        t0 = time.perf_counter()
        for c, part in zip(self.conns, parts):
            c.send(part)
        inner = [c.recv() for c in self.conns[: len(parts)]]
        wall = time.perf_counter() - t0
        return {"procs": procs, "wall_s": wall, "units_per_min": 60 * units / wall, "process_wall_s": inner}

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(timeout=60)


def from_log(log: str) -> list[dict]:
    """The rounds of a run from its printed lines (values as printed, 2 decimals): for a run stopped before it
    wrote its JSON."""
    import re

    rounds: dict[int, dict] = {}
    for line in Path(log).read_text().splitlines():
        m = re.match(r"round (\d+): 1 worker ([\d.]+) units/min, 2 workers ([\d.]+) units/min, ratio ([\d.]+); driver "
                     r"overhead/unit (\d+) / (\d+) ms; cluster daemons ([\d.]+) / ([\d.]+) CPU s, driver ([\d.]+) / "
                     r"([\d.]+) CPU s", line)
        if m:
            arm = lambda i: {"units_per_min": float(m[2 + i]), "driver_overhead_s": int(m[5 + i]) / 1000,  # noqa: E731
                             "cluster_daemon_cpu_s": float(m[7 + i]), "driver_cpu_s": float(m[9 + i])}
            rounds.setdefault(int(m[1]), {"round": int(m[1])}).update(one=arm(0), two=arm(1), ratio=float(m[4]))
        m = re.match(r"round (\d+): plain 1 process ([\d.]+) units/min, 2 processes ([\d.]+), ratio ([\d.]+)"
                     r"(?:; Ray / plain ([\d.]+))?", line)
        if m:
            row = rounds.setdefault(int(m[1]), {"round": int(m[1])})
            row.update(plain_one={"units_per_min": float(m[2])}, plain_two={"units_per_min": float(m[3])},
                       plain_ratio=float(m[4]))
            if m[5]:
                row["efficiency"] = float(m[5])
    return [rounds[k] for k in sorted(rounds)]


def summarize(rounds: list[dict], args) -> dict:
    """Median and range of each measured ratio over the rounds, and the driver's overhead per no-op unit."""
    summary = {"cpu": cpu_features(), "units": args.units, "steps": args.steps,
               "test_examples": args.test_examples, "rounds": rounds}
    for k in ("ratio", "plain_ratio", "efficiency"):
        vals = [r[k] for r in rounds if k in r]
        if vals:
            summary.update({f"{k}_median": statistics.median(vals), f"{k}_min": min(vals), f"{k}_max": max(vals)})
    over = [x[k]["driver_overhead_s"] for x in rounds for k in ("one", "two") if k in x]
    if over:
        summary["driver_overhead_ms_median"] = 1000 * statistics.median(over)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--test-examples", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--plain", action="store_true", help="also measure 1 vs 2 plain processes (the ceiling)")
    ap.add_argument("--only-plain", action="store_true", help="measure only the plain processes (no Ray arms)")
    ap.add_argument("--json", default=None, help="written after every round, so a stopped run keeps its rounds")
    ap.add_argument("--from-log", default=None, help="rebuild --json from a run's printed lines instead of measuring")
    args = ap.parse_args()
    if args.from_log:
        summary = summarize(from_log(args.from_log), args)
        summary["recorded_from"] = f"the printed lines of {args.from_log} (values as printed, 2 decimals)"
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}))
        return
    print(f"CPU {cpu_features()} · torch {torch.__version__} · {args.units} units · load {os.getloadavg()}",
          flush=True)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        args.plain = args.plain or args.only_plain
        pool = PlainPool(args, Path(tmp) / "plain") if args.plain else None
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)  # alternate which size goes first
            row: dict = {"round": r}
            if not args.only_plain:
                res = {n: sweep_once(n, args, Path(tmp) / f"r{r}") for n in order}
                row.update(one=res[1], two=res[2], ratio=res[2]["units_per_min"] / res[1]["units_per_min"])
                print(f"round {r}: 1 worker {res[1]['units_per_min']:.2f} units/min, 2 workers "
                      f"{res[2]['units_per_min']:.2f} units/min, ratio {row['ratio']:.2f}; driver overhead/unit "
                      f"{res[1]['driver_overhead_s'] * 1000:.0f} / {res[2]['driver_overhead_s'] * 1000:.0f} ms; "
                      f"cluster daemons {res[1]['cluster_daemon_cpu_s']:.1f} / {res[2]['cluster_daemon_cpu_s']:.1f} "
                      f"CPU s, driver {res[1]['driver_cpu_s']:.1f} / {res[2]['driver_cpu_s']:.1f} CPU s", flush=True)
            if pool:
                plain = {n: pool.sweep(n, args.units) for n in order}
                row["plain_one"], row["plain_two"] = plain[1], plain[2]
                row["plain_ratio"] = plain[2]["units_per_min"] / plain[1]["units_per_min"]
                if "ratio" in row:
                    row["efficiency"] = row["ratio"] / row["plain_ratio"]
                print(f"round {r}: plain 1 process {plain[1]['units_per_min']:.2f} units/min, 2 processes "
                      f"{plain[2]['units_per_min']:.2f}, ratio {row['plain_ratio']:.2f}"
                      + (f"; Ray / plain {row['efficiency']:.2f}" if "efficiency" in row else ""), flush=True)
            row["load"] = os.getloadavg()
            rounds.append(row)
            if args.json:
                Path(args.json).write_text(json.dumps(summarize(rounds, args), indent=2) + "\n")
        if pool:
            pool.close()
    summary = summarize(rounds, args)
    names = {"ratio": "Ray 2 vs 1 workers", "plain_ratio": "plain processes 2 vs 1", "efficiency": "Ray / plain"}
    for k in names:
        if k + "_median" in summary:
            print(f"{names[k]}: median {summary[k + '_median']:.2f} (range {summary[k + '_min']:.2f}–"
                  f"{summary[k + '_max']:.2f})")
    if "driver_overhead_ms_median" in summary:
        print(f"driver overhead {summary['driver_overhead_ms_median']:.0f} ms/unit")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
