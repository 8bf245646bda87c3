"""The quick waywardness protocol on SST-2 and AG News × smollm2-135m and gemma3-270m, plus the comparison table.

    .venv/bin/python benchmarks/wayward_protocol.py [--out runs/wayward-quick] [--tasks sst2,agnews] [--budget-min 90]

The same sweeps as four `softscope wayward --protocol quick` runs, but interleaved round-robin: every (task, model)
sweep gets its first target, then its second, ... (--phases). The quick list alternates short Pile sentences and
long task definitions, so a cut-short sweep still spans the length axis. Each sweep is resumable, so rerunning
the script continues where a killed one stopped; `--budget-min` stops starting new targets after that many
minutes. Prints the comparison table (one row per sweep, then one per target) and writes compare_<tasks>.md/.json,
compare_drop_vs_length_<tasks>.png and protocol_log_<tasks>.json to --out
(two runners, say one per task, can share --out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from softscope.engine.models import load_model
from softscope.engine.runs import atomic_write_text, write_json
from softscope.methods.wayward import (WaywardConfig, compare, compare_plot, compare_table, load_targets, run_wayward,
                               target_table)

MODELS = ["smollm2-135m", "gemma3-270m"]
TASKS = ["sst2", "agnews"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/wayward-quick")
    ap.add_argument("--phases", default="1,2,3,4,5,6,7,8", help="max targets per sweep after each phase")
    ap.add_argument("--budget-min", type=float, default=90.0)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--tasks", default=",".join(TASKS))
    a = ap.parse_args()
    out = Path(a.out)
    tag = a.tasks.replace(",", "-")  # two runners (say one per task) can share --out
    t0 = time.time()
    adapters = {m: load_model(m, device="cpu") for m in a.models.split(",")}
    log = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_seconds": time.time() - t0, "steps": []}
    dirs = []
    for phase in [int(x) for x in a.phases.split(",")]:
        for task in a.tasks.split(","):
            for m, adapter in adapters.items():
                if (time.time() - t0) / 60 > a.budget_min:
                    print(f"budget of {a.budget_min} min spent: stopping before {task}/{m} phase {phase}", flush=True)
                    break
                cfg = WaywardConfig(model=m, device="cpu", task=task, protocol="quick", max_targets=phase)
                d = out / f"{task}-{m}"
                if d not in dirs:
                    dirs.append(d)
                if phase > len(load_targets(cfg, task)):
                    continue
                ts = time.time()
                s = run_wayward(cfg, d, resume=(d / "config.json").exists(), adapter=adapter, progress=False)
                print(f"[{(time.time() - t0) / 60:6.1f} min] {task} {m}: {s['rows']} rows, {s['targets']} targets, "
                      f"acc γ=0 {s['mean_acc_gamma0']:.3f}, reached {s['share_reached']}, within {s['share_within']}, "
                      f"mean drop {s['mean_drop']}", flush=True)
                log["steps"].append({"phase": phase, "task": task, "model": m, "seconds": time.time() - ts,
                                     "rows": s["rows"]})
                write_json(out / f"protocol_log_{tag}.json", {**log, "wall_seconds": time.time() - t0})
    done = [d for d in dirs if (d / "wayward.jsonl").exists()]
    rows = compare(done)
    table = compare_table(rows) + "\n\n" + target_table(done)
    print(table)
    log["wall_seconds"] = time.time() - t0
    write_json(out / f"protocol_log_{tag}.json", log)
    write_json(out / f"compare_{tag}.json", rows)
    atomic_write_text(out / f"compare_{tag}.md", table + "\n")
    compare_plot(done, out / f"compare_drop_vs_length_{tag}.png")
    print(json.dumps({"wall_minutes": round(log["wall_seconds"] / 60, 1)}))


if __name__ == "__main__":
    main()
