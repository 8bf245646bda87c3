"""The pre-registered tests of benchmarks/results/bias_gemma.md, from the run folders, into bias_gemma_*.json.

    python benchmarks/bias_gemma_report.py control runs/bias-gemma-control \
        --provenance benchmarks/results/bias_gemma_control_run.json --out benchmarks/results/bias_gemma_control.json
    python benchmarks/bias_gemma_report.py describe runs/gemma-s2-describe --train runs/gemma-s2 \
        --provenance benchmarks/results/bias_gemma_train_run.json benchmarks/results/bias_gemma_describe_run.json \
        --out benchmarks/results/bias_gemma_describe.json

control: per prompt (strength 0, strength 1, the positive control) the descriptions naming the cue (the detector's
flags) with 95% Wilson intervals, the highest similarity to the cue's terms, biased-prediction rate and accuracy;
primary: control vs strength 0, one-sided Fisher exact. describe: per checkpoint and the control, layer pairs whose
description contains a class word; primary: control vs step 0, one-sided Fisher exact. Each output carries the
provenance records of the runs (command, commit, times, CPU capability, threads, load before/after) and its own.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

from scipy.stats import fisher_exact

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_commit, machine, now  # noqa: E402

from softscope.engine.runs import read_json, read_jsonl, write_json  # noqa: E402
from softscope.engine.stats import wilson_interval  # noqa: E402


def fisher_greater(k1: int, n1: int, k0: int, n0: int) -> float:
    return float(fisher_exact([[k1, n1 - k1], [k0, n0 - k0]], alternative="greater")[1])


def control(run: Path) -> dict:
    summ = read_json(run / "bias_summary.json")
    rows = {r["prompt"]: r for r in read_jsonl(run / "bias.jsonl")}
    pc = read_json(run / "positive_control.json")
    rows[pc["prompt"]] = pc
    prompts = {}
    for name, r in rows.items():
        f = run / "prompts" / name / "descriptions.jsonl"  # this layout; older runs: <name>-descriptions.jsonl
        desc = read_jsonl(f if f.exists() else run / f"{name}-descriptions.jsonl")
        if not desc:
            raise SystemExit(f"no descriptions for {name} in {run}")
        k, n = sum(bool(d["mention"]) for d in desc), len(desc)
        best = max(desc, key=lambda d: d["mention_similarity"]) if desc else {}
        prompts[name] = {"strength": r.get("strength"), "text": r.get("text"), "descriptions": n, "naming_cue": k,
                         "naming_cue_ci95": list(wilson_interval(k, n)), "naming_cue_string": sum(bool(d["mention_string"]) for d in desc),
                         "naming_control_feature": sum(bool(d.get("control_mention")) for d in desc),
                         "max_similarity": best.get("mention_similarity"), "max_similarity_text": best.get("cut"),
                         "max_similarity_pair": [best.get("source_layer"), best.get("target_layer")],
                         "containing_a_single_exclamation_mark": sum("!" in d["text"] for d in desc),
                         **{k2: r.get(k2) for k2 in ("biased_prediction_rate", "feature_flip_rate", "control_flip_rate",
                                                     "eligible", "accuracy", "examples")}}
    s0 = next(n for n, p in prompts.items() if p["strength"] == 0.0)
    c = prompts["positive-control"]
    p = fisher_greater(c["naming_cue"], c["descriptions"], prompts[s0]["naming_cue"], prompts[s0]["descriptions"])
    return {"run": str(run), "model": summ["model"], "task": summ["task"], "feature": summ["feature"],
            "control_feature": summ["control"], "prompts": prompts,
            "primary": {"test": "positive control vs strength 0: descriptions naming the cue, one-sided Fisher exact",
                        "control": [c["naming_cue"], c["descriptions"]], "strength0": [prompts[s0]["naming_cue"],
                                                                                     prompts[s0]["descriptions"]],
                        "p": p, "fires": p < 0.05,
                        "best_similarity_control": c["max_similarity"], "threshold": 0.8},
            "bias_summary": summ}


def describe(run: Path, train: Path | None) -> dict:
    summ = read_json(run / "describe_summary.json")
    rows = read_jsonl(run / "descriptions.jsonl")
    by = collections.defaultdict(list)
    for r in rows:
        by["control" if r["checkpoint"] == "control" else f"step {r['step']}"].append(r)
    out = {}
    for name, rs in by.items():
        pairs = collections.defaultdict(list)
        for r in rs:
            pairs[(r["source_layer"], r["target_layer"])].append(r)
        named = sum(any(x["class_rate"] > 0 for x in v) for v in pairs.values())
        best = max(rs, key=lambda x: (x["class_rate"], x["similarity"]))
        out[name] = {"pairs": len(pairs), "descriptions": len(rs), "pairs_with_class_word": named,
                     "pairs_with_class_word_ci95": list(wilson_interval(named, len(pairs))),
                     "mean_class_rate": sum(x["class_rate"] for x in rs) / len(rs),
                     "accuracy": rs[0].get("accuracy"), "best": {k: best[k] for k in ("source_layer", "target_layer",
                                                                                     "class_rate", "similarity", "cut")}}
    c, s0 = out["control"], out["step 0"]
    p = fisher_greater(c["pairs_with_class_word"], c["pairs"], s0["pairs_with_class_word"], s0["pairs"])
    res = {"run": str(run), "model": summ["model"], "task": summ["task"], "layers": summ["layers"],
           "max_new_tokens": summ["max_new_tokens"], "control_text": summ["control"]["text"], "prompts": out,
           "primary": {"test": "control vs step 0: layer pairs with a class word, one-sided Fisher exact",
                       "control": [c["pairs_with_class_word"], c["pairs"]],
                       "step0": [s0["pairs_with_class_word"], s0["pairs"]], "p": p, "read_back": p < 0.05},
           "summary": summ}
    if train and (train / "metrics.jsonl").exists():
        res["train_metrics"] = [m for m in read_jsonl(train / "metrics.jsonl") if "accuracy" in m or "eval" in str(m)]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("control", "describe"))
    ap.add_argument("run")
    ap.add_argument("--train", default="")
    ap.add_argument("--provenance", nargs="*", default=[])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    t0, before = time.time(), machine()
    res = control(Path(a.run)) if a.kind == "control" else describe(Path(a.run), Path(a.train) if a.train else None)
    res["runs"] = [read_json(Path(p)) for p in a.provenance]
    res["report"] = {"command_line": " ".join(sys.argv), "git_commit": git_commit(), "date_utc": now(),
                     "machine_before": before, "loadavg_after": machine()["loadavg"], "wall_s": round(time.time() - t0, 1),
                     "preregistration": "benchmarks/results/bias_gemma.md §1"}
    write_json(Path(a.out), res)
    print(f"primary: {res['primary']}")


if __name__ == "__main__":
    main()
