"""Score an RLPrompt run's prompts on the same test examples: the selected greedy prompt, the step-0 greedy
prompt (the untrained policy), the label words cycled to the prompt length, and no prompt (template only).

Accuracy with 95% Wilson intervals; each baseline against the selected prompt with a paired bootstrap interval
of the difference and the exact McNemar p-value (same examples). Also how diverse the last step's samples were.

    python benchmarks/rlprompt_compare.py runs/rl/w-0 --examples 400 --out benchmarks/results/rlprompt_w0.json
    python benchmarks/rlprompt_compare.py runs/rl/w-0 --examples 0 --exclude 200   # the test examples not yet seen
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from softscope.engine.stats import compare_paired, wilson_interval
from softscope.engine.models import load_model
from softscope.engine.runs import read_json, read_jsonl, write_json
from softscope.engine.scoring import Scorer
from softscope.engine.tasks import load_task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="one weight's folder of an rlprompt run (holds rlprompt_summary.json)")
    ap.add_argument("--examples", type=int, default=400, help="seeded test subset size (0 = all)")
    ap.add_argument("--exclude", type=int, default=0,
                    help="drop the seeded subset of this size (one already looked at): score the rest of the test split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    run = Path(a.run)
    summ = read_json(run / "rlprompt_summary.json")
    metrics = read_jsonl(run / "metrics.jsonl")
    adapter = load_model(summ["model"])
    task = load_task(summ["task"])
    scorer = Scorer(adapter, task)
    test = task.subset("test", a.examples or None, a.seed)
    if a.exclude:
        seen = {id(r) for r in task.subset("test", a.exclude, a.seed)}
        test = [r for r in test if id(r) not in seen]
    gold = torch.tensor([r.label for r in scorer.rows(test)])
    L = len(summ["ids"])
    words = [t for w in task.label_words for t in adapter.encode(" " + w)]
    evals = [m for m in metrics if m["event"] == "eval"]
    prompts = {"selected": summ["ids"], "step0": evals[0]["ids"], "label_words": (words * L)[:L], "none": []}
    correct, table = {}, {}
    for name, ids in prompts.items():
        P = adapter.embed(torch.tensor(ids)) if ids else torch.zeros(0, adapter.width, dtype=adapter.dtype)
        ok = (scorer.predict(P, test, 32).argmax(-1) == gold).tolist()
        correct[name] = ok
        k = sum(ok)
        table[name] = {"text": adapter.decode(ids), "ids": ids, "accuracy": k / len(ok),
                       "ci95": list(wilson_interval(k, len(ok)))}
        print(f"{name:12s} {k / len(ok):.3f} [{table[name]['ci95'][0]:.3f}, {table[name]['ci95'][1]:.3f}] "
              f"{adapter.decode(ids)!r}", flush=True)
    paired = {f"selected_vs_{n}": compare_paired(correct["selected"], correct[n], seed=a.seed)
              for n in ("step0", "label_words", "none")}
    for k, v in paired.items():
        print(f"{k}: diff {v['diff']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] {v['test']} p={v['p']:.3g}")
    train = [m for m in metrics if m["event"] == "train"]
    last = train[-1] if train else {}
    res = {"run": str(run), "fluency_weight": summ["fluency_weight"], "steps": summ["steps"],
           "selected_step": summ["selected_step"], "heldout_accuracy": summ["heldout_accuracy"],
           "test_examples": len(test), "excluded_subset": a.exclude, "seed": a.seed, "prompts": table, "paired": paired,
           "last_step": {k: last.get(k) for k in ("step", "entropy", "distinct_prompts", "top_token_share",
                                                   "reward_grad_ratio", "best_sample")},
           "curve": summ["curve"]}
    if a.out:
        write_json(Path(a.out), res)
    print(json.dumps(res["last_step"], ensure_ascii=False))


if __name__ == "__main__":
    main()
