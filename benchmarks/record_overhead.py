"""What the declared records cost a writer: metrics.jsonl rewritten through its record (`Run.write_jsonl`, every row
checked by `MetricsRow.of`) against the same rows written plainly (`runs.write_jsonl`), same rows, same process.

RLPrompt rewrites its whole metrics.jsonl after every step (so a long run can be watched), the heaviest use of the
checked write path; the rows here are RLPrompt's shape (15 keys). Rounds alternate the order of the two writers;
the ratio is paired within a round.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/record_overhead.py --rows 300 --rounds 7 \\
        --json benchmarks/results/record_overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import finish_record, start_record  # noqa: E402

from softscope.engine.runs import Run, register_kind, write_jsonl  # noqa: E402


def rows(n: int) -> list[dict]:
    """n RLPrompt-shaped training rows (the keys rlprompt.py logs), each with distinct values."""
    return [{"step": i, "event": "train", "loss": 3749.8 - i, "grad_norm": 13.9, "reward_grad_ratio": 2.4e6,
             "entropy": 4.06, "distinct_prompts": 3, "top_token_share": 0.33, "reward_task": 7.06 + i / n,
             "reward_raw": 7.06, "reward_task_std": 4.99, "train_accuracy": 0.83, "prompt_nll": 3.95,
             "best_sample": "news actors", "best_sample_reward": 11.3} for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    rec = start_record(sys.argv[0], sys.argv[1:])
    data = rows(args.rows)
    kind = register_kind("record-overhead")
    with tempfile.TemporaryDirectory() as tmp, Run.open(Path(tmp) / "run", kind) as run:
        plain_path = Path(tmp) / "plain.jsonl"

        def checked() -> float:
            t = time.perf_counter()
            run.write_jsonl("metrics.jsonl", data)
            return time.perf_counter() - t

        def plain() -> float:
            t = time.perf_counter()
            write_jsonl(plain_path, data)
            return time.perf_counter() - t

        checked(), plain()  # warm-up
        assert (run.path / "metrics.jsonl").read_text() == plain_path.read_text()  # the same bytes either way
        ratios, times = [], {"checked": [], "plain": []}
        for r in range(args.rounds):
            order = (checked, plain) if r % 2 == 0 else (plain, checked)
            got = {f.__name__: f() for f in order}
            for k, v in got.items():
                times[k].append(v)
            ratios.append(got["checked"] / got["plain"])
    rec.update({
        "what": f"{args.rows} RLPrompt-shaped metrics rows written through their record vs plainly (same bytes)",
        "rows": args.rows, "rounds": args.rounds,
        "checked_ms": [round(1000 * t, 2) for t in times["checked"]],
        "plain_ms": [round(1000 * t, 2) for t in times["plain"]],
        "ratio_checked_over_plain": {"per_round": [round(x, 3) for x in ratios], "median": round(statistics.median(ratios), 3),
                                     "min": round(min(ratios), 3), "max": round(max(ratios), 3)},
        "checked_us_per_row_median": round(1e6 * statistics.median(times["checked"]) / args.rows, 1),
    })
    Path(args.json).write_text(json.dumps(finish_record(rec), indent=1) + "\n")
    print(json.dumps(rec["ratio_checked_over_plain"]), rec["checked_us_per_row_median"], "µs/row")


if __name__ == "__main__":
    main()
