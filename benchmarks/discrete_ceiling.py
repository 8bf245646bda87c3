"""How much a hand-written discrete prompt can help a task model: each candidate text against no prompt (template
only) on the same held-out examples — an upper-bound check on what a discrete-prompt learner (RLPrompt, PEZ) can
be expected to gain over an uninformative prompt.

Candidates: the task's reference descriptions, a few short label-naming texts, and optionally a run's step-0
RLPrompt prompt. Accuracy with a 95% Wilson interval; each against no prompt with the paired test
(`engine.stats.compare_paired`: exact McNemar p, paired bootstrap interval). The held-out set is the one RLPrompt
selects on (cut from train with `holdout_task`), so the test split stays untouched.

    OMP_NUM_THREADS=1 python benchmarks/discrete_ceiling.py --task sst2 --out benchmarks/results/rlprompt/ceiling.json
"""

from __future__ import annotations

import argparse

import torch

from softscope.engine.models import load_model
from softscope.engine.runs import write_json
from softscope.engine.scoring import Scorer
from softscope.engine.stats import compare_paired, wilson_interval
from softscope.engine.tasks import holdout_task, load_task

SHORT = {"sst2": [" positive or negative?", " Movie review sentiment:", "Review:", " Opinion of the film:"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--holdout", type=int, default=300, help="held-out examples cut from train (RLPrompt's default)")
    ap.add_argument("--extra", action="append", default=[], help="name=text of another candidate (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    adapter, task = load_model(a.model), load_task(a.task)
    held, held_name = holdout_task(task, a.holdout, a.seed)
    rows = held.subset("test", None, a.seed)
    scorer = Scorer(adapter, task)
    gold = torch.tensor([r.label for r in scorer.rows(rows)])
    cands = {"none": ""}
    cands.update({f"reference{i}": t for i, t in enumerate(task.references)})
    cands.update({f"short{i}": t for i, t in enumerate(SHORT.get(task.name, []))})
    cands.update(dict(e.split("=", 1) for e in a.extra))
    correct, table = {}, {}
    for name, text in cands.items():
        ids = adapter.encode(text) if text else []
        P = adapter.embed(torch.tensor(ids)) if ids else torch.zeros(0, adapter.width, dtype=adapter.dtype)
        ok = (scorer.predict(P, rows, 32).argmax(-1) == gold).int().tolist()
        correct[name] = ok
        table[name] = {"text": text, "tokens": len(ids), "accuracy": sum(ok) / len(ok),
                       "ci95": list(wilson_interval(sum(ok), len(ok)))}
        if name != "none":
            table[name]["vs_none"] = compare_paired(ok, correct["none"], seed=a.seed)
            v = table[name]["vs_none"]
            cmp = f"  vs none {v['diff']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] p={v['p']:.3g}"
        else:
            cmp = ""
        print(f"{name:12s} {len(ids):3d} tok {table[name]['accuracy']:.3f}{cmp}  {text!r}", flush=True)
    if a.out:
        write_json(a.out, {"model": adapter.name, "task": task.name, "heldout": held_name, "examples": len(rows),
                           "seed": a.seed, "candidates": table})


if __name__ == "__main__":
    main()
