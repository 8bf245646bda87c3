"""Bias probe on the default model: does the elaborated InSPEcT's bias-mention rate follow the biased-prediction rate?

    nice -n 5 .venv/bin/python benchmarks/bias_experiment.py                       # everything, in one process
    nice -n 5 .venv/bin/python benchmarks/bias_experiment.py sst2-word --seeds 1   # one setting, one seed
    .venv/bin/python benchmarks/bias_experiment.py --report                        # tables of finished prompts
    .venv/bin/python benchmarks/bias_experiment.py --deep sst2-punct/seed1-hi/s1.00-seed1 sst2-punct/seed1/s0.00-seed1
                      # the paper-sized elaborated InSPEcT (full 27 x 27 grid, 60 tokens) on chosen prompts

Every (setting, seed) writes its own run dir benchmarks/runs/bias/<setting>/seed<k> (resumable), so they can
run as parallel processes; the report pools them.

Protocol (issue 6): SST-2 with a planted name (word:Spielberg) and a planted punctuation mark (punct:!!), AG News
with a planted phrase (phrase:"as seen on TV"); strengths {0, 0.5, 0.8, 1}; 2 seeds; favoured class = the
task's first class (SST-2: negative, AG News: world). Cut to fit a shared 2-core CPU (BiasRunConfig defaults):
7 tokens, 30 steps × batch 8 on 240 training examples (one epoch), lr 3e-2; 100 held-out test examples for the
biased-prediction rate and accuracy; elaborated InSPEcT over every 8th layer (2, 10, 18, 26: 16 pairs) × 2 seeded
target prompts × 20 new tokens = 32 descriptions per prompt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "runs" / "bias"
SETTINGS = {
    "sst2-word": dict(task="sst2", feature="word:Spielberg"),
    "sst2-punct": dict(task="sst2", feature="punct:!!"),
    "agnews-phrase": dict(task="agnews", feature='phrase:"as seen on TV"'),
}


def pooled_rows(name: str) -> list[dict]:
    """bias.jsonl rows of every seed directory of a setting (seeds run as separate processes)."""
    rows = []
    seen = set()
    for path in sorted((OUT / name).glob("seed*/bias.jsonl")):
        for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip()):
            if r["prompt"] not in seen:  # two processes may have measured the same prompt
                seen.add(r["prompt"])
                rows.append(r)
    return rows


def report(names) -> None:
    """Print a markdown table per setting (whatever prompts have finished) and the pooled correlation."""
    from softscope.methods.bias import BiasRunConfig, summarize_bias
    from softscope.engine.stats import correlation

    pooled = []
    for name in names:
        rows = pooled_rows(name)
        if not rows:
            print(f"{name}: no finished prompt yet")
            continue
        pooled += rows
        cfg = json.loads(next((OUT / name).glob("seed*/config.json")).read_text())
        strengths = BiasRunConfig().strengths
        s = summarize_bias(rows, strengths, cfg["config"]["feature"], cfg["control"], cfg["favoured"], cfg["task"]["name"],
                      cfg["config"]["model"])
        print(f"\n### {name}: {s['task']}, feature {s['feature']} → {s['favoured']}, control {s['control']}, "
              f"{len(rows)} prompts\n")
        print("| strength | prompts | accuracy | biased-prediction rate [min, max] | feature flips | control flips | "
              "mention rate (any) [min, max] | by string | by embedding | control mentions |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for p in s["per_strength"]:
            if not p["prompts"]:
                continue
            print(f"| {p['strength']:.1f} | {p['prompts']} | {p['accuracy']:.3f} | {p['biased_prediction_rate']:+.3f} "
                  f"[{p['biased_prediction_rate_min']:+.2f}, {p['biased_prediction_rate_max']:+.2f}] | "
                  f"{p['feature_flip_rate']:.3f} | {p['control_flip_rate']:.3f} | {p['mention_rate']:.3f} "
                  f"[{p['mention_rate_min']:.2f}, {p['mention_rate_max']:.2f}] | {p['mention_rate_string']:.3f} | "
                  f"{p['mention_rate_embedding']:.3f} | {p['control_mention_rate']:.3f} |")
        for key, c in s["correlation"].items():
            print(f"- {key}: Pearson {c['pearson']:.3f} (p={c['pearson_p']:.3g}), "
                  f"Spearman {c['spearman']:.3f} (p={c['spearman_p']:.3g}), n={c['n']}")
        print(f"- compute: {sum(r['seconds'] for r in rows) / 60:.0f} process-minutes")
    if pooled:
        c = correlation([r["mention_rate"] for r in pooled], [r["biased_prediction_rate"] for r in pooled])
        print(f"\npooled over settings: mention vs biased-prediction rate Pearson {c['pearson']:.3f} "
              f"(p={c['pearson_p']:.3g}), Spearman {c['spearman']:.3f} (p={c['spearman_p']:.3g}), n={c['n']}")


def deep(prompts: list[str], layers: str, tokens: int, n_targets: int) -> None:
    """Describe finished prompts again at the paper's size (full grid, 60 tokens) and measure the mention rate,
    to test whether the cut protocol's short descriptions were what kept the feature unnamed."""
    from softscope.engine.metrics import unexpected_words
    from softscope.methods.bias import Feature, control_for, load_base_task, score_mentions, string_mention
    from softscope.engine.target_prompts import DEMO_TEXT
    from softscope.methods.describe import describe_prompt
    from softscope.engine.models import load_model
    from softscope.engine.patching import layer_pairs
    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.runs import read_json, read_jsonl, write_json, write_jsonl
    from softscope.engine.target_prompts import build as build_target

    adapter = load_model("smollm2-135m", device="cpu")
    pairs = layer_pairs(layers, adapter.n_layers)
    results = []
    for spec in prompts:  # <setting>/<run dir>/<prompt name>
        setting, run_dir, name = spec.split("/")
        out = OUT / setting / run_dir
        cfg = read_json(out / "config.json")
        c = cfg["config"]
        feature = Feature.parse(c["feature"])
        control = control_for(feature, c.get("control"))
        base = load_base_task(c["task"], None)
        targets = [build_target(adapter, c["pool"], c["tokens"], i, c["demos"]) for i in range(n_targets)]
        prompt = SoftPrompt.load(out / "prompts" / name / "prompt.safetensors").tensor
        t = time.time()
        rows = describe_prompt(adapter, prompt, pairs, targets, tokens, 64)
        texts = [r["cut"] for r in rows]
        rates = score_mentions(rows, feature, control, c["threshold"], c.get("mention_terms") or ())
        prev = next(r for r in read_jsonl(out / "bias.jsonl") if r["prompt"] == name)
        demo = DEMO_TEXT + " " + " ".join(tg.text for tg in targets)
        res = {"prompt": spec, "strength": prev["strength"], "biased_prediction_rate": prev["biased_prediction_rate"],
               "cut_protocol_mention_rate": prev["mention_rate"], "layers": layers, "pairs": len(pairs),
               "target_prompts": n_targets, "max_new_tokens": tokens, "descriptions": len(rows), **rates,
               "max_mention_similarity": max(r["mention_similarity"] for r in rows),
               "raw_text_mention_rate": sum(string_mention(r["text"], feature.mention_terms()) for r in rows) / len(rows),
               "unexpected_words": unexpected_words(texts, base.classes, base.references, demo, top=10),
               "mentioning_examples": [{"pair": [r["source_layer"], r["target_layer"]], "cut": r["cut"]}
                                       for r in rows if r["mention"]][:5],
               "seconds": time.time() - t}
        d = OUT / "deep" / spec.replace("/", "__")
        write_jsonl(d / "descriptions.jsonl", rows)
        write_json(d / "deep_summary.json", res)
        results.append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "unexpected_words"}), flush=True)
        print("  unexpected words:", ", ".join(f"{w['word']} ({w['descriptions']})" for w in res["unexpected_words"]),
              flush=True)
    write_json(OUT / "deep" / "deep_results.json", results)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="*", default=list(SETTINGS), help=f"subset of {', '.join(SETTINGS)}")
    ap.add_argument("--seeds", default="0,1", help="seeds to run, each into OUT/<setting>/seed<k> (comma-separated)")
    ap.add_argument("--strengths", default=None, help="strengths in the order to run them (default: 0,0.5,0.8,1)")
    ap.add_argument("--tag", default="", help="suffix of the run dir seed<k><tag> (parallel processes per seed)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: BiasRunConfig's 30)")
    ap.add_argument("--rescore", action="store_true", help="with --report: recompute mention columns first")
    ap.add_argument("--report", action="store_true", help="only print tables of finished prompts")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--deep", nargs="+", default=None, metavar="SETTING/RUN/PROMPT",
                    help="re-describe finished prompts at the paper's size (see --deep-layers, --deep-tokens)")
    ap.add_argument("--deep-layers", default="all")
    ap.add_argument("--deep-tokens", type=int, default=60)
    ap.add_argument("--deep-targets", type=int, default=2)
    args = ap.parse_args(argv)
    if args.deep:
        import torch

        torch.set_num_threads(args.threads)
        return deep(args.deep, args.deep_layers, args.deep_tokens, args.deep_targets)
    bad = [s for s in args.settings if s not in SETTINGS]
    if bad:
        ap.error(f"unknown settings {bad}: use {', '.join(SETTINGS)}")
    if args.report:
        if args.rescore:  # mention columns by the current rule, from the saved descriptions
            from softscope.methods.bias import rescore_mentions

            for name in args.settings:
                for d in sorted((OUT / name).glob("seed*/bias.jsonl")):
                    rescore_mentions(d.parent)
        return report(args.settings)

    import torch

    from softscope.methods.bias import BiasRunConfig, run
    from softscope.engine.models import load_model

    torch.set_num_threads(args.threads)
    adapter = load_model("smollm2-135m", device="cpu")
    for name in args.settings:
        for seed in (int(x) for x in args.seeds.split(",")):
            t = time.time()
            extra = {"strengths": [float(x) for x in args.strengths.split(",")]} if args.strengths else {}
            if args.steps:
                extra["steps"] = args.steps
            cfg = BiasRunConfig(device="cpu", first_seed=seed, seeds=1, **SETTINGS[name], **extra)
            run(cfg, OUT / name / f"seed{seed}{args.tag}", adapter=adapter, progress=True,
                command=f"benchmarks/bias_experiment.py {name} --seeds {seed}")
            print(f"{name} seed {seed}: done in {(time.time() - t) / 60:.1f} min", flush=True)
    report(args.settings)


if __name__ == "__main__":
    sys.exit(main())
