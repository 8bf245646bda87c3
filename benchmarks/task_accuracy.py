"""Test accuracy of 7-token soft prompts on the default model for the five built-in tasks (full test sets).

    python benchmarks/task_accuracy.py --steps 200 --out runs/accuracy [--tasks sst2,agnews,trec,subj,sst5]

Each task is one ordinary `softscope.engine.training.train` run (resumable), so a run can be inspected afterwards with
every other command. Prints a table and writes runs/accuracy/accuracy_summary.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from softscope.engine.config import TrainConfig
from softscope.engine.models import load_model
from softscope.engine.runs import read_json, write_json
from softscope.engine.training import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="sst2,agnews,trec,subj,sst5")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=3e-2)
    ap.add_argument("--out", default="runs/accuracy")
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()
    adapter = load_model(args.model, device="cpu", dtype="float32")
    rows = []
    for name in args.tasks.split(","):
        run = Path(args.out) / name
        t = time.time()
        if (run / "train_summary.json").exists():
            s = read_json(run / "train_summary.json")
        else:
            cfg = TrainConfig(task=name, model=args.model, tokens=7, steps=args.steps, lr=args.lr,
                              checkpoint_every=50, eval_examples=200, final_eval="full", seed=0)
            train(cfg, run, adapter=adapter, resume=None, progress=False)
            s = read_json(run / "train_summary.json")
        rows.append({"task": name, "steps": s["steps"], "accuracy": s["final_accuracy"],
                     "test_examples": s["final_eval_examples"], "step0_subset_accuracy": s["checkpoints"][0]["accuracy"],
                     "seconds": s["seconds"]})
        print(f"{name:<7} steps {s['steps']}  test accuracy {s['final_accuracy']:.4f} on {s['final_eval_examples']}"
              f"  (step 0 on the 200-example subset: {s['checkpoints'][0]['accuracy']:.3f})  {time.time() - t:.0f} s",
              flush=True)
    write_json(Path(args.out) / "accuracy_summary.json", rows)


if __name__ == "__main__":
    main()
