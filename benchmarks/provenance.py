"""Run one command and write a provenance record of it: the command line, git commit, UTC start/end, wall time,
exit status, `torch.backends.cpu.get_cpu_capability()`, the thread settings, and the load average before and after.

    OMP_NUM_THREADS=1 python benchmarks/provenance.py --out benchmarks/results/tradeoff_rl_w0.5_run.json -- \
        softscope rlprompt --task sst2 ... --out runs/rl-w0.5

The record is written when the command ends (also when it fails), so a results file never claims a run that did
not finish. Benchmark scripts that measure something themselves call `machine()` and `git_commit()` directly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def git_commit() -> str:
    """HEAD of the checkout this runs in, with '+dirty' if tracked files differ from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def machine() -> dict:
    """CPU capability, thread settings and load average now."""
    import torch

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
            "nproc": os.cpu_count(), "loadavg": list(os.getloadavg())}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="provenance JSON to write when the command ends")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command")
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    rec = {"command": cmd, "command_line": " ".join(cmd), "git_commit": git_commit(), "start_utc": now(),
           "machine_before": machine()}
    t0 = time.time()
    rc = subprocess.call(cmd)
    rec.update(end_utc=now(), wall_s=round(time.time() - t0, 1), returncode=rc,
               loadavg_after=list(os.getloadavg()))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rec, indent=2) + "\n")
    sys.exit(rc)


if __name__ == "__main__":
    main()


def start_record(script: str, argv: list[str]) -> dict:
    """The provenance fields a benchmark that measures in-process puts first in its results file."""
    return {"command_line": " ".join([script, *argv]), "git_commit": git_commit(), "start_utc": now(),
            "machine_before": machine()}


def finish_record(rec: dict) -> dict:
    """Add the load average at the end (the record is then complete for benchmarks/readme_table.py)."""
    rec["loadavg_after"] = list(os.getloadavg())
    return rec
