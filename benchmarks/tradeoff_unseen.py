"""The interpretability–accuracy trade-off on the SST-2 test sentences no RLPrompt prompt was tuned or selected on.

Scores, on the same test examples (the test split minus the seeded subset of --exclude examples, as
`rlprompt_compare.py --examples 0 --exclude 200`): a reference soft prompt and its two nearest-token projections,
every PEZ weight's selected prompt, every RLPrompt weight's selected prompt (and the step-0 greedy prompt), and no
prompt. Per prompt: accuracy with its 95% Wilson interval, faithfulness to the reference soft prompt (agreement,
KL over the classes), perplexity after the document start, dictionary-word share, text and ids. Then the tests
fixed in benchmarks/results/tradeoff.md §1: per tuner the slope of accuracy on the weight (within-example
permutation p, bootstrap interval; Holm over tuners), Spearman ρ(weight, perplexity) and ρ(weight, dictionary
share) with exact permutation p, and the paired test of the extreme weights (paired bootstrap + exact McNemar).
Writes the JSON (with command, commit, CPU capability, threads, load before/after) and the plot.

    OMP_NUM_THREADS=1 python benchmarks/tradeoff_unseen.py --soft runs/tradeoff/soft --pez runs/tradeoff/pez \
        --rl 0=benchmarks/results/rlprompt/offset-300step-unseen.json --rl 0.5=runs/tradeoff/rl-w0.5 \
        --rl 1.0=runs/tradeoff/rl-w1 --out benchmarks/results/tradeoff_sst2.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_commit, machine, now  # noqa: E402

from softscope.engine.models import load_model  # noqa: E402
from softscope.engine.projection import project  # noqa: E402
from softscope.engine.prompts import SoftPrompt  # noqa: E402
from softscope.engine.runs import read_json, read_jsonl, write_json  # noqa: E402
from softscope.engine.scoring import Scorer  # noqa: E402
from softscope.engine.stats import compare_paired, wilson_interval  # noqa: E402
from softscope.engine.tasks import load_task  # noqa: E402
from softscope.methods.interpret import faithfulness, scrutability  # noqa: E402

N_PERM = 10_000
N_BOOT = 10_000


# ---- statistics fixed in the pre-registration ----------------------------------------------------------------
def slope(weights: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Least-squares slope of accuracy on the weight; acc [..., W]."""
    wc = weights - weights.mean()
    return (acc * wc).sum(-1) / (wc ** 2).sum()


def slope_test(weights: list[float], correct: np.ndarray, seed: int = 0) -> dict:
    """correct [W, N] (0/1). Slope, within-example permutation p (two-sided), bootstrap 95% interval over examples."""
    w = np.asarray(weights, float)
    C = correct.astype(np.float32)
    W, N = C.shape
    obs = float(slope(w, C.mean(1)))
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < N_PERM:
        b = min(1000, N_PERM - done)
        perm = rng.random((b, N, W)).argsort(-1)  # a permutation of the weights for every example
        shuffled = np.take_along_axis(np.broadcast_to(C.T, (b, N, W)), perm, -1)  # [b, N, W]
        s = slope(w, shuffled.mean(1))
        hits += int((np.abs(s) >= abs(obs) - 1e-12).sum())
        done += b
    boots = []
    for _ in range(N_BOOT // 1000):
        idx = rng.integers(0, N, (1000, N))
        boots.append(slope(w, C[:, idx].mean(-1).T))  # [1000]
    boots = np.concatenate(boots)
    return {"slope": obs, "slope_per_unit_weight": "accuracy change per 1.0 of weight",
            "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
            "p_permutation": (hits + 1) / (N_PERM + 1), "permutations": N_PERM, "bootstrap": N_BOOT}


def spearman_exact(x: list[float], y: list[float], alternative: str) -> dict:
    """Spearman ρ with the exact permutation p over all orderings of y (one-sided: 'less' or 'greater')."""
    from scipy.stats import rankdata

    def rank(v):
        return rankdata(v).astype(float)  # average ranks for ties

    def rho(a, b):
        a, b = rank(a), rank(b)
        a, b = a - a.mean(), b - b.mean()
        d = math.sqrt((a ** 2).sum() * (b ** 2).sum())
        return float((a * b).sum() / d) if d else float("nan")

    obs = rho(np.asarray(x), np.asarray(y))
    if math.isnan(obs):  # a constant series (e.g. dictionary share 0 for every prompt): no rank correlation
        return {"rho": None, "p_exact_one_sided": None, "alternative": alternative, "n": len(x),
                "smallest_possible_p": 1 / math.factorial(len(x)), "note": "undefined: constant values"}
    perms = [rho(np.asarray(x), np.asarray(p)) for p in itertools.permutations(y)]
    p = (sum(r <= obs + 1e-12 for r in perms) if alternative == "less" else sum(r >= obs - 1e-12 for r in perms))
    return {"rho": obs, "p_exact_one_sided": p / len(perms), "alternative": alternative, "n": len(x),
            "smallest_possible_p": 1 / math.factorial(len(x))}


def holm(ps: dict) -> dict:
    items = sorted(ps.items(), key=lambda kv: kv[1])
    out, run = {}, 0.0
    for i, (k, p) in enumerate(items):
        run = max(run, min(1.0, (len(items) - i) * p))
        out[k] = run
    return out


# ---- prompts --------------------------------------------------------------------------------------------------
def rl_prompts(spec: str) -> tuple[float, dict]:
    """'W=PATH': an rlprompt run (its w-* folder, or the folder above it) or an rlprompt_compare JSON."""
    w, _, path = spec.partition("=")
    p = Path(path)
    if p.suffix == ".json":
        d = read_json(p)
        sel, step0 = d["prompts"]["selected"], d["prompts"]["step0"]
        return float(w), {"ids": sel["ids"], "selected_step": d["selected_step"], "step0_ids": step0["ids"],
                          "heldout_accuracy": d["heldout_accuracy"], "source": str(p)}
    if not (p / "metrics.jsonl").exists():  # the sweep folder (its own rlprompt_summary.json is the sweep's)
        subs = sorted(p.glob("w-*/rlprompt_summary.json"))
        if len(subs) != 1:
            raise SystemExit(f"{p}: expected one finished w-* folder, found {len(subs)}")
        p = subs[0].parent
    s = read_json(p / "rlprompt_summary.json")
    evals = [m for m in read_jsonl(p / "metrics.jsonl") if m["event"] == "eval"]
    return float(w), {"ids": s["ids"], "selected_step": s["selected_step"], "step0_ids": evals[0]["ids"],
                      "heldout_accuracy": s["heldout_accuracy"], "source": str(p)}


def pez_prompts(path: Path) -> dict[float, dict]:
    out = {}
    for f in sorted(path.glob("w-*/pez_summary.json")):
        s = read_json(f)
        out[float(s["fluency_weight"])] = {"ids": s["ids"], "selected_step": s["selected_step"],
                                           "heldout_accuracy": s["heldout_accuracy"], "source": str(f.parent)}
    return out


# ---- main -----------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--soft", required=True, help="train run folder of the reference soft prompt (prompt.safetensors)")
    ap.add_argument("--pez", default="", help="pez run folder (w-*/pez_summary.json)")
    ap.add_argument("--rl", action="append", default=[], metavar="W=PATH", help="RLPrompt weight and its run/JSON")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--exclude", type=int, default=200, help="drop the seeded test subset of this size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="runs/tradeoff/scores_cache.json", help="per-prompt class log-probs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot", default="benchmarks/results/tradeoff_sst2.png")
    ap.add_argument("--fill-pez-only", action="store_true",
                    help="only score the PEZ prompts into --cache and stop (to fill a cache beside another run)")
    a = ap.parse_args()
    t0, started, before = time.time(), now(), machine()

    adapter = load_model(a.model)
    task = load_task(a.task)
    scorer = Scorer(adapter, task)
    test = task.subset("test", None, a.seed)
    seen = {id(r) for r in task.subset("test", a.exclude, a.seed)} if a.exclude else set()
    test = [r for r in test if id(r) not in seen]
    gold = torch.tensor([r.label for r in scorer.rows(test)])
    print(f"{len(test)} test examples ({a.exclude} seeded excluded)", flush=True)

    cache_path = Path(a.cache)
    cache = read_json(cache_path) if cache_path.exists() else {}
    key0 = f"{a.model}|{a.task}|exclude={a.exclude}|seed={a.seed}|n={len(test)}"
    if cache.get("key") != key0:
        cache = {"key": key0, "lp": {}}

    def logprobs(name: str, P: torch.Tensor, key: str) -> torch.Tensor:
        if key not in cache["lp"]:
            t = time.time()
            with torch.no_grad():
                cache["lp"][key] = scorer.predict(P, test, 32).tolist()
            print(f"  scored {name} in {time.time() - t:.0f} s", flush=True)
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache_path, cache)
        return torch.tensor(cache["lp"][key])

    soft = SoftPrompt.load(Path(a.soft) / "prompt.safetensors")
    lp_soft = logprobs("soft prompt", soft.tensor, f"soft:{Path(a.soft).resolve()}:{soft.step}")
    correct: dict[str, list[int]] = {}

    def row(name: str, method: str, weight, ids: list[int] | None, lp: torch.Tensor, extra: dict | None = None) -> dict:
        ok = (lp.argmax(-1) == gold).int()
        correct[name] = ok.tolist()
        k, n = int(ok.sum()), len(ok)
        r = {"name": name, "method": method, "weight": weight, "ids": ids,
             "text": adapter.decode(ids) if ids else ("" if ids is not None else None),
             "accuracy": k / n, "ci95": list(wilson_interval(k, n)), "correct": k, "examples": n}
        if method != "soft prompt":
            f = faithfulness(lp_soft, lp, gold)
            r.update(agreement=f["agreement"], agreement_ci95=f["agreement_ci95"], kl=f["kl"])
        if ids:
            s = scrutability(adapter, ids)
            r.update(perplexity=s["perplexity"], dictionary_share=s["dictionary_share"],
                     non_dictionary_words=s["non_dictionary_words"], tokens=len(ids))
        r.update(extra or {})
        print(f"{name:22s} {r['accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] "
              f"ppl {r.get('perplexity', float('nan')):9.1f} dict {r.get('dictionary_share', float('nan')):.2f} "
              f"agree {r.get('agreement', 1.0):.3f}  {r['text']!r}", flush=True)
        return r

    def hard(name, method, weight, ids, extra=None):
        P = adapter.embed(torch.tensor(ids)) if ids else torch.zeros(0, adapter.width, dtype=adapter.dtype)
        return row(name, method, weight, ids, logprobs(name, P, "ids:" + ",".join(map(str, ids))), extra)

    if a.fill_pez_only:
        for w, p in sorted(pez_prompts(Path(a.pez)).items()):
            ids = p["ids"]
            logprobs(f"PEZ w={w:g}", adapter.embed(torch.tensor(ids)), "ids:" + ",".join(map(str, ids)))
        return
    rows = [row("soft prompt", "soft prompt", None, None, lp_soft,
                {"tokens": soft.n_tokens, "step": soft.step, "source": str(a.soft)})]
    rows.append(hard("no prompt", "no prompt", None, []))
    for metric in ("cos", "l2"):
        rows.append(hard(f"projection ({metric})", f"projection ({metric})", None,
                         project(adapter, soft.tensor, metric, 1).ids))
    pez = pez_prompts(Path(a.pez)) if a.pez else {}
    for w, p in sorted(pez.items()):
        rows.append(hard(f"PEZ w={w:g}", "PEZ", w, p["ids"], {k: v for k, v in p.items() if k != "ids"}))
    rl = dict(rl_prompts(s) for s in a.rl)
    for w, p in sorted(rl.items()):
        rows.append(hard(f"RLPrompt λ={w:g}", "RLPrompt", w, p["ids"],
                         {k: v for k, v in p.items() if k not in ("ids", "step0_ids")}))
    step0 = {tuple(p["step0_ids"]) for p in rl.values()}
    if step0:
        rows.append(hard("RLPrompt step 0", "RLPrompt step 0", None, list(sorted(step0)[0]),
                         {"same_step0_in_every_run": len(step0) == 1}))

    # the pre-registered tests
    tests, ps = {}, {}
    for method, tag in (("PEZ", "pez"), ("RLPrompt", "rlprompt")):
        rs = sorted([r for r in rows if r["method"] == method], key=lambda r: r["weight"])
        if len(rs) < 2:
            continue
        ws = [r["weight"] for r in rs]
        C = np.array([correct[r["name"]] for r in rs])
        t = {"weights": ws, "accuracy_trend": slope_test(ws, C, a.seed),
             "perplexity_trend": spearman_exact(ws, [r["perplexity"] for r in rs], "less"),
             "dictionary_share_trend": spearman_exact(ws, [r["dictionary_share"] for r in rs], "greater"),
             "extremes": {"high": rs[-1]["name"], "low": rs[0]["name"],
                          **compare_paired(correct[rs[-1]["name"]], correct[rs[0]["name"]], seed=a.seed),
                          "perplexity_ratio_high_over_low": rs[-1]["perplexity"] / rs[0]["perplexity"]}}
        ps[tag] = t["accuracy_trend"]["p_permutation"]
        tests[tag] = t
    for tag, p in holm(ps).items():
        t = tests[tag]
        t["accuracy_trend"]["p_holm"] = p
        acc_falls = t["accuracy_trend"]["slope"] < 0 and p < 0.05
        ppl = t["perplexity_trend"]
        read_rises = (ppl["rho"] is not None and ppl["rho"] < 0 and t["extremes"]["perplexity_ratio_high_over_low"] < 1)
        t["verdict"] = ("trade-off reproduced" if acc_falls and read_rises else
                        "accuracy falls, readability does not rise" if acc_falls else
                        "readability rises, accuracy does not fall" if read_rises else "neither")
        t["accuracy_falls"], t["readability_rises"] = acc_falls, read_rises
    secondary = {}
    for r in rows:
        if r["name"] not in ("no prompt", "soft prompt"):
            secondary[r["name"]] = {"vs_no_prompt": compare_paired(correct[r["name"]], correct["no prompt"], seed=a.seed),
                                    "vs_soft_prompt": compare_paired(correct[r["name"]], correct["soft prompt"],
                                                                     seed=a.seed)}
    for tag, t in tests.items():
        e = t["extremes"]
        print(f"{tag}: slope {t['accuracy_trend']['slope']:+.4f} [{t['accuracy_trend']['ci95'][0]:+.4f}, "
              f"{t['accuracy_trend']['ci95'][1]:+.4f}] perm p {t['accuracy_trend']['p_permutation']:.3g} "
              f"Holm {t['accuracy_trend']['p_holm']:.3g}; ρ(w, ppl) {t['perplexity_trend']['rho']} "
              f"p {t['perplexity_trend']['p_exact_one_sided']}; {e['high']} − {e['low']} {e['diff']:+.3f} "
              f"[{e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}] McNemar p {e['p']:.3g}; ppl ×"
              f"{e['perplexity_ratio_high_over_low']:.2f} -> {t['verdict']}", flush=True)

    plot(rows, Path(a.plot), len(test))
    res = {"command_line": " ".join(sys.argv), "git_commit": git_commit(), "started_utc": started,
           "finished_utc": now(), "wall_s": round(time.time() - t0, 1), "machine_before": before,
           "loadavg_after": machine()["loadavg"], "model": adapter.name, "task": task.name,
           "test_examples": len(test), "excluded_seeded_subset": a.exclude, "seed": a.seed,
           "preregistration": "benchmarks/results/tradeoff.md §1", "rows": rows, "tests": tests,
           "secondary": secondary, "plot": str(a.plot)}
    write_json(Path(a.out), res)
    print(f"wrote {a.out} and {a.plot}")


def plot(rows: list[dict], path: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method, marker in (("PEZ", "o"), ("RLPrompt", "s")):
        pts = sorted([r for r in rows if r["method"] == method], key=lambda r: r["weight"])
        if not pts:
            continue
        x = [r["perplexity"] for r in pts]
        y = [r["accuracy"] for r in pts]
        err = np.array([[r["accuracy"] - r["ci95"][0] for r in pts], [r["ci95"][1] - r["accuracy"] for r in pts]])
        ax.errorbar(x, y, yerr=err, marker=marker, capsize=2, label=f"{method} (label: weight)")
        for r in pts:
            ax.annotate(f"{r['weight']:g}", (r["perplexity"], r["accuracy"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
    drawn = set()
    for r in rows:
        if (r["method"].startswith("projection") or r["method"] == "RLPrompt step 0") and tuple(r["ids"]) not in drawn:
            drawn.add(tuple(r["ids"]))  # the cos and l2 projections can be the same tokens: one point
            same = [q["name"] for q in rows if q["ids"] == r["ids"] and q["method"].startswith("projection")]
            ax.scatter([r["perplexity"]], [r["accuracy"]], marker="x", color="gray")
            ax.annotate(" = ".join(same) if len(same) > 1 else r["name"], (r["perplexity"], r["accuracy"]),
                        fontsize=6, color="gray", xytext=(-30, 6 if "step" in r["name"] else -10),
                        textcoords="offset points")
    for name, style in (("soft prompt", "--"), ("no prompt", ":")):
        r = next(r for r in rows if r["name"] == name)
        ax.axhline(r["accuracy"], color="k", ls=style, lw=0.8, label=f"{name} {r['accuracy']:.3f} (no perplexity)")
    ax.set_xscale("log")
    ax.set_xlabel("prompt perplexity after the document start (log; lower = more readable)", fontsize=8)
    ax.set_ylabel(f"accuracy on {n} unseen test sentences (95% Wilson)", fontsize=8)
    ax.set_title("SST-2, SmolLM2-135M: accuracy vs readability of discrete prompts", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
