"""InSPEcT on the default model: does the description the model writes improve as the soft prompt learns?

Two phases, each resumable (finished work is kept):

    .venv/bin/python benchmarks/inspect_experiment.py train     # 4 tasks x 7-token prompts, >= 8 checkpoints each
    .venv/bin/python benchmarks/inspect_experiment.py describe  # describe every checkpoint, aggregate, correlate

Settings (docs/methods.md §1, §4): 7 tokens, vocabulary-sample init, AdamW lr 2e-2/3e-2 linear decay, batch 8, 9-11 checkpoints
from step 0 to the end, each with accuracy on a seeded test subset; the final prompt on the full test set.
Descriptions: every 6th layer (2, 8, 14, 20, 26: 25 pairs) x 3 seeded target prompts from the plain pool, 16 new
tokens (the cut rule ends most descriptions before that; the 2-core CPU set these sizes).

    .venv/bin/python benchmarks/inspect_experiment.py report    # the tables for benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "runs" / "inspect"
# task: (steps, checkpoint every, eval subset per checkpoint, final eval, lr). SST-2 ran first (80 steps, lr 2e-2)
# on a loaded machine; TREC, SUBJ and AG News were rerun on a quiet one with the settings of
# benchmarks/task_accuracy.py (100 steps, lr 3e-2), 11 checkpoints each (see benchmarks/RESULTS.md).
TASKS = {
    "sst2": (80, 10, 200, "full", 2e-2),
    "trec": (100, 10, 200, "full", 3e-2),
    "subj": (100, 10, 200, "full", 3e-2),
    "agnews": (100, 10, 200, "full", 3e-2),
}
THREADS = 2  # torch threads; --threads
DESCRIBE = dict(layers="every:6", n_targets=3, max_new_tokens=16, batch_size=64, top_k=10)


def train_all(tasks: list[str]) -> None:
    from softscope.engine.config import TrainConfig
    from softscope.engine.models import load_model
    from softscope.engine.training import train

    torch.set_num_threads(THREADS)
    adapter = load_model("smollm2-135m", device="cpu")
    for task in tasks:
        steps, every, n_eval, final, lr = TASKS[task]
        run = OUT / task
        if (run / "train_summary.json").exists():
            print(f"{task}: already trained", flush=True)
            continue
        cfg = TrainConfig(task=task, tokens=7, steps=steps, lr=lr, init="vocab", batch_size=8,
                          checkpoint_every=every, eval_examples=n_eval, final_eval=final, seed=0, device="cpu")
        t = time.time()
        res = train(cfg, run, resume=None, adapter=adapter, progress=False,
                    command="benchmarks/inspect_experiment.py train")
        accs = " ".join(f"{c['step']}:{c['accuracy']:.3f}" for c in res.checkpoints)
        print(f"{task}: final {res.final_accuracy:.4f} in {time.time() - t:.0f}s; checkpoints {accs}", flush=True)


def describe_all(tasks: list[str]) -> None:
    """Describe each task's checkpoints as soon as training writes them (describe() resumes), then summarise."""
    from softscope.methods.describe import DescribeConfig, describe
    from softscope.engine.models import load_model

    torch.set_num_threads(THREADS)
    adapter = load_model("smollm2-135m", device="cpu")
    cfg = DescribeConfig(**DESCRIBE)
    for task in tasks:
        run = OUT / task
        seen = -1
        while True:
            finished = (run / "train_summary.json").exists()
            n = len(list((run / "checkpoints").glob("step-*.safetensors"))) if (run / "checkpoints").exists() else 0
            if n and (n != seen or finished):
                seen = n
                t = time.time()
                res = describe(run, cfg, adapter=adapter, progress=False,
                               command="benchmarks/inspect_experiment.py describe")
                print(f"{task}: {len(res.summary['checkpoints'])} checkpoints described ({time.time() - t:.0f}s)",
                      flush=True)
            if finished:
                break
            time.sleep(30)


def report(tasks: list[str]) -> None:
    """Markdown tables from the run dirs: accuracy, per-checkpoint scores, Spearman ρ, example descriptions."""
    from softscope.methods.describe import SCORES, score_of
    from softscope.engine.runs import atomic_write_text, read_json

    lines = ["| task | final accuracy (test examples) | checkpoint accuracy, step 0 → end |", "|---|---|---|"]
    sums = {}
    for task in tasks:
        if not (OUT / task / "describe" / "describe_summary.json").exists():
            lines.append(f"| {task} | not described yet | |")
            continue
        ds = read_json(OUT / task / "describe" / "describe_summary.json")
        sums[task] = ds
        if (OUT / task / "train_summary.json").exists():
            ts = read_json(OUT / task / "train_summary.json")
            final = f"{ts['final_accuracy']:.3f} ({ts['final_eval_examples']})"
        else:
            final = "training not finished"
        accs = " ".join(f"{c['accuracy']:.2f}" for c in ds["checkpoints"])
        lines.append(f"| {task} | {final} | {accs} (described checkpoints) |")
    lines += ["", "Per checkpoint (grid max = the paper's score; the rest aggregate all pairs × target prompts):", ""]
    for task, ds in sums.items():
        lines += [f"**{task}** ({ds['pairs']} pairs × {ds['target_prompts']} target prompts, "
                  f"{ds['max_new_tokens']} new tokens)", "",
                  "| step | acc | max class rate | mean class rate | naming share | max ROUGE-1 | max similarity "
                  "| top-10 similarity | max class rate per target prompt |", "|---|---|---|---|---|---|---|---|---|"]
        for c in ds["checkpoints"]:
            lines.append(f"| {c['step']} | {c['accuracy']:.3f} | {score_of(c, 'best.class_rate'):.2f} | "
                         f"{c['class_rate_mean']:.3f} | {c['naming_share']:.3f} | {score_of(c, 'best.rouge1'):.2f} | "
                         f"{score_of(c, 'best.similarity'):.3f} | {c['similarity_topk']:.3f} | "
                         f"{' / '.join(f'{v:.2f}' for v in c['max_per_target']['class_rate'])} |")
        lines.append("")
    lines += ["Spearman ρ (p) of checkpoint accuracy with each score:", "",
              "| score | " + " | ".join(sums) + " | tasks with ρ > 0.5 |", "|---|" + "---|" * (len(sums) + 1)]
    for key in SCORES:
        cells, good = [], 0
        for ds in sums.values():
            c = ds["correlation"].get(key, {"spearman": float("nan"), "spearman_p": float("nan")})
            cells.append("n/a (constant)" if c["spearman"] != c["spearman"] else f"{c['spearman']:+.2f} ({c['spearman_p']:.2f})")
            good += c["spearman"] == c["spearman"] and c["spearman"] > 0.5
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {good} |")
    lines += ["", "Example descriptions (best pair by semantic similarity, cut text):", ""]
    for task, ds in sums.items():
        cks = ds["checkpoints"]
        for c in (cks[0], cks[len(cks) // 2], cks[-1]):
            b = c["best"]["similarity"]
            lines.append(f"- {task} step {c['step']} (acc {c['accuracy']:.2f}), layers {b['source_layer']}→"
                         f"{b['target_layer']}, sim {b['score']:.2f}: “{b['cut'].replace(chr(10), '⏎')}”")
        b = max(cks, key=lambda c: score_of(c, "best.class_rate"))["best"]["class_rate"]
        lines.append(f"- {task}, best class rate over all checkpoints ({b['score']:.2f}, layers "
                     f"{b['source_layer']}→{b['target_layer']}): “{b['cut'].replace(chr(10), '⏎')}”")
    text = "\n".join(lines) + "\n"
    atomic_write_text(OUT / "report.md", text)
    print(text)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["train", "describe", "report"])
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of " + ",".join(TASKS))
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 when the machine is shared)")
    args = ap.parse_args(argv)
    global THREADS
    THREADS = args.threads
    tasks = args.tasks.split(",")
    if args.phase == "train":
        train_all(tasks)
    elif args.phase == "describe":
        describe_all(tasks)
    else:
        report(tasks)


if __name__ == "__main__":
    sys.exit(main())
