"""InSPEcT on SST-2 with both source passes: softscope's (the prompt fed as input embeddings) and the authors'
(`--source-pass after-block-0`), on the same checkpoints, grid, target prompts and tokens, each with the positive
control (a prompt set to e(the task's first reference description)).

    .venv/bin/python benchmarks/inspect_experiment.py train --tasks sst2      # 80 steps, 9 checkpoints
    .venv/bin/python benchmarks/inspect_source_pass.py --threads 2             # describe twice, print the tables

The primary score is fixed before this run: `similarity_topk` (as `softscope describe` prints it first); the
class rate (share of descriptions naming a class word) is reported as secondary. Spearman ρ of checkpoint accuracy
with each score comes with its p and a 95% bootstrap interval (`engine.stats`). JSON: results/inspect_source_pass.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inspect_experiment import DESCRIBE, OUT  # the grid, targets and tokens of the InSPEcT table; its run folders

ROOT = Path(__file__).resolve().parents[1]
RUN = OUT / "sst2"
PASSES = ("embeddings", "after-block-0")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "inspect_source_pass.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from softscope.engine.models import load_model
    from softscope.engine.stats import correlation
    from softscope.methods.describe import DescribeConfig, describe, score_of

    adapter = load_model("smollm2-135m", device="cpu")
    out = {}
    for sp in PASSES:
        cfg = DescribeConfig(**DESCRIBE, source_pass=sp, control=True)
        t = time.time()
        res = describe(RUN, cfg, out=RUN / f"describe-{sp}", adapter=adapter, progress=False,
                       command=f"benchmarks/inspect_source_pass.py (source pass {sp})")
        s = res.summary
        cks = s["checkpoints"]
        acc = [c["accuracy"] for c in cks]
        row = {"seconds": round(time.time() - t, 1), "checkpoints": [], "control": s.get("control")}
        for c in cks:
            row["checkpoints"].append({"step": c["step"], "accuracy": c["accuracy"],
                                       "similarity_topk": c["similarity_topk"],
                                       "class_rate_mean": c["class_rate_mean"],
                                       "max_class_rate": score_of(c, "best.class_rate")})
        for key in ("similarity_topk", "class_rate_mean"):
            row[f"spearman_{key}"] = correlation(acc, [c[key] for c in row["checkpoints"]])
        out[sp] = row
        print(f"{sp}: {len(cks)} checkpoints in {row['seconds']} s", flush=True)
    Path(args.json).write_text(json.dumps(out, indent=1, default=float) + "\n")
    # the side-by-side table
    e, a = out["embeddings"], out["after-block-0"]
    print("| step | accuracy | top-10 sim (emb) | top-10 sim (after-block-0) | class rate (emb) | class rate (after-block-0) |")
    print("|---|---|---|---|---|---|")
    for ce, ca in zip(e["checkpoints"], a["checkpoints"]):
        print(f"| {ce['step']} | {ce['accuracy']:.3f} | {ce['similarity_topk']:.3f} | {ca['similarity_topk']:.3f} | "
              f"{ce['class_rate_mean']:.3f} | {ca['class_rate_mean']:.3f} |")
    for sp in PASSES:
        for key in ("similarity_topk", "class_rate_mean"):
            print(sp, key, json.dumps(out[sp][f"spearman_{key}"], default=float))
        print(sp, "control", json.dumps(out[sp]["control"], default=float)[:400])


if __name__ == "__main__":
    main()
