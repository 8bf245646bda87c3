"""The README's test command as CI runs it: a clean clone beside ../shared, `bash .ci/run`, timed and counted.

    python benchmarks/test_suite.py --json benchmarks/results/test_suite.json

Clones HEAD into a sibling folder (so ../shared is beside it, as in CI), runs .ci/run there with CI=true, and
writes the pytest counts, pytest's own wall time, the whole run's wall time and the provenance record (command,
commit, date, CPU capability, threads, load before and after). Say in RESULTS what else was running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import finish_record, start_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"^=*\s*(?P<body>(?:\d+ \w+(?:, )?)+) in (?P<secs>[\d.]+)s", re.M)


def counts(text: str) -> dict:
    """pytest's closing line, e.g. '380 passed, 2 skipped in 170.12s (0:02:50)' → counts and seconds."""
    m = list(SUMMARY.finditer(text))
    if not m:
        return {}
    last = m[-1]
    out = {k: 0 for k in ("passed", "failed", "skipped", "errors", "warnings")}
    for n, word in re.findall(r"(\d+) (\w+)", last.group("body")):
        out[{"error": "errors", "warning": "warnings"}.get(word, word)] = int(n)
    secs = float(last.group("secs"))
    out.update(pytest_seconds=secs, pytest_wall=f"{int(secs // 60)} min {int(secs % 60)} s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--clone", default=str(ROOT.parent / "SCRATCH-ci"), help="where to clone (beside ../shared)")
    args = ap.parse_args()
    clone = Path(args.clone)
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    rec = {**start_record(sys.argv[0], sys.argv[1:]), "what": f"git clone . {clone} && cd {clone} && bash .ci/run"}
    t0 = time.time()
    p = subprocess.run(["bash", ".ci/run"], cwd=clone, env={**os.environ, "CI": "true"}, capture_output=True,
                       text=True)
    wall = time.time() - t0
    log = p.stdout + p.stderr
    (clone / "ci.log").write_text(log)
    rec.update(returncode=p.returncode, wall_s=round(wall, 1), wall=f"{int(wall // 60)} min {int(wall % 60)} s",
               wheel_check_passed="== wheel check passed ==" in log,
               **counts(log))
    finish_record(rec)
    Path(args.json).write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps({k: rec.get(k) for k in ("returncode", "passed", "failed", "skipped", "pytest_wall", "wall",
                                               "wheel_check_passed")}))
    print(f"log: {clone / 'ci.log'}")


if __name__ == "__main__":
    main()
