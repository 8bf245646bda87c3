"""`make demo` from scratch, timed: the tour a newcomer runs first (train → eval → describe → explain → report).

    python benchmarks/demo_time.py --json benchmarks/results/demo.json

Runs the demo module with --fresh into runs/demo-timed (the install is not timed: `make demo` installs first) and
writes its wall time, final accuracy and the provenance record (command, commit, date, CPU capability, threads,
load before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import finish_record, start_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--out", default="runs/demo-timed")
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "softscope.cli.demo", "--out", args.out, "--fresh"]
    rec = {**start_record(sys.argv[0], sys.argv[1:]), "demo_command": " ".join(cmd[1:])}
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"}, capture_output=True, text=True)
    wall = time.time() - t0
    out = p.stdout + p.stderr
    (ROOT / args.out / "demo.log").write_text(out) if (ROOT / args.out).is_dir() else None
    m = re.search(r"final test accuracy[^\d]*([\d.]+)", out)
    rec.update(returncode=p.returncode, wall_s=round(wall, 1), wall=f"{int(wall // 60)} min {int(wall % 60)} s",
               final_accuracy=float(m.group(1)) if m else None)
    finish_record(rec)
    Path(args.json).write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps({k: rec[k] for k in ("returncode", "wall", "final_accuracy")}))


if __name__ == "__main__":
    main()
