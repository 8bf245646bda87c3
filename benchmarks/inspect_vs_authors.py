"""`describe --protocol paper` against the InSPEcT authors' released code, pair by pair, on one prompt.

Their code needs decoder layers that return tuples (transformers 4.46), so it runs in a separate virtual
environment and nothing of it enters this repository. Three steps, all writing into one folder OUT:

    # 1. softscope (this repo's venv): describe --protocol paper on the given pairs and target-prompt text
    .venv/bin/python benchmarks/inspect_vs_authors.py softscope --prompt P.safetensors --out OUT
    # 2. the authors' code (a venv with transformers 4.46; --repo is a clone of danaramati1/InSPEcT)
    /tmp/venv446/bin/python benchmarks/inspect_vs_authors.py authors --repo /tmp/InSPEcT --model MODEL_DIR --out OUT
    # 3. compare (either venv): pair-by-pair equality of generated token ids and of texts
    .venv/bin/python benchmarks/inspect_vs_authors.py compare --out OUT

Step 1 writes the target-prompt text (softscope's `plain` pool, seed 0, with " x" x n placeholders) and the
prompt, so step 2 reads the same inputs. Step 2 calls their `run_patchscopes_with_params` unchanged; a tokenizer
subclass records the ids they decode, so ids can be compared, not only text. Step 1 also records the default
(`--source-pass embeddings`) texts, to show what the switch changes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PAIRS = "4:4,8:4,12:12,16:8,20:20,24:16"


def _softscope(args) -> None:
    import torch

    from softscope.engine.models import load_model
    from softscope.engine.patching import layer_pairs, patch_generate_ids, source_states
    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.target_prompts import JOINER, MARKER, build, sample_demos
    from softscope.methods.describe import DescribeConfig, describe

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sp = SoftPrompt.load(args.prompt)
    a = load_model(args.model, device="cpu", dtype="float32")
    n = sp.n_tokens
    head = JOINER.join(sample_demos("plain", 0, 3)) + JOINER.rstrip()
    text = head + " x" * n  # the authors' layout: demos " | "-joined, " |", then " x" x n
    pairs = layer_pairs(args.pairs, a.n_layers)
    res = {}
    for sp_name in ("after-block-0", "embeddings"):
        cfg = DescribeConfig(protocol="paper", source_pass=sp_name, layers=args.pairs, max_new_tokens=args.tokens,
                             target_prompt=head + MARKER, task="sst2", device="cpu", dtype="float32")
        t0 = time.time()
        r = describe(args.prompt, cfg, out=out / f"describe-{sp_name}", adapter=a, progress=False)
        tp = build(a, cfg.target_prompt, n)
        S = source_states(a, sp.tensor, sorted({s for s, _ in pairs}), sp_name)
        at = {l: i for i, l in enumerate(sorted({s for s, _ in pairs}))}
        ids = patch_generate_ids(a, tp.ids, tp.placeholder_positions, torch.stack([S[at[s]] for s, _ in pairs]),
                                 [t for _, t in pairs], args.tokens, stop=cfg.stop)
        res[sp_name] = {"seconds": time.time() - t0, "target_ids": tp.ids,
                        "pairs": [{"source_layer": s, "target_layer": t, "ids": i, "text": row["text"],
                                   "cut": row["cut"]}
                                  for (s, t), i, row in zip(pairs, ids, r.rows)]}
    (out / "inputs.json").write_text(json.dumps({"target_prompt": text, "n": n, "pairs": pairs,
                                                 "prompt": str(args.prompt), "tokens": args.tokens}))
    torch.save(sp.tensor.float(), out / "prompt.pt")
    (out / "softscope.json").write_text(json.dumps(res, indent=1))
    print(f"softscope: {len(pairs)} pairs written to {out}")


def _authors(args) -> None:
    import torch
    import transformers

    sys.path.insert(0, str(Path(args.repo).resolve()))
    from src.patchscopes.prompt_patching import run_patchscopes_with_params  # their code, unchanged
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(args.out)
    inp = json.loads((out / "inputs.json").read_text())
    tok = AutoTokenizer.from_pretrained(args.model)
    if tok.pad_token_id is None:  # their get_tokenizer
        tok.pad_token_id = tok.eos_token_id
    seen: list[list[int]] = []
    plain_decode = tok.batch_decode

    def recording_decode(ids, *a, **k):  # record what they decode; return exactly what they would get
        seen.append([int(x) for x in ids[0]])
        return plain_decode(ids, *a, **k)

    tok.batch_decode = recording_decode
    # A config.json written by transformers 5 keeps RoPE's base under "rope_parameters", which 4.46 does not read:
    # it would silently fall back to rope_theta 10000 (SmolLM2 uses 100000) and every position > 0 would differ.
    cfg_json = json.loads((Path(args.model) / "config.json").read_text())
    extra = {}
    if "rope_theta" not in cfg_json and "rope_theta" in cfg_json.get("rope_parameters", {}):
        extra["rope_theta"] = cfg_json["rope_parameters"]["rope_theta"]
    model = AutoModelForCausalLM.from_pretrained(args.model, **extra)  # their get_model: float32, default settings
    print(f"authors: rope_theta {model.config.rope_theta}" + (" (from rope_parameters)" if extra else ""))
    model.eval()
    soft = torch.load(out / "prompt.pt")
    end_token = tok.encode("$")[0]  # their run_patching_and_save
    target_ids = tok(inp["target_prompt"]).input_ids
    rows = []
    t0 = time.time()
    for s, t in inp["pairs"]:
        seen.clear()
        text = run_patchscopes_with_params(model, tok, soft, inp["target_prompt"], inp["n"], s, t, end_token)
        rows.append({"source_layer": s, "target_layer": t, "ids": seen[-1][len(target_ids):], "text": text})
    (out / "authors.json").write_text(json.dumps({"transformers": transformers.__version__, "end_token": end_token,
                                                  "rope_theta": model.config.rope_theta,
                                                  "target_ids": target_ids, "seconds": time.time() - t0,
                                                  "pairs": rows}, indent=1))
    print(f"authors: {len(rows)} pairs in {time.time() - t0:.0f} s (transformers {transformers.__version__})")


def _compare(args) -> None:
    out = Path(args.out)
    ours = json.loads((out / "softscope.json").read_text())
    theirs = json.loads((out / "authors.json").read_text())
    paper = ours["after-block-0"]
    summary = {"target_ids_equal": paper["target_ids"] == theirs["target_ids"], "pairs": []}
    for o, th, emb in zip(paper["pairs"], theirs["pairs"], ours["embeddings"]["pairs"]):
        first_diff = next((i for i, (x, y) in enumerate(zip(o["ids"], th["ids"])) if x != y),
                          None if len(o["ids"]) == len(th["ids"]) else min(len(o["ids"]), len(th["ids"])))
        emb_diff = next((i for i, (x, y) in enumerate(zip(emb["ids"], th["ids"])) if x != y), None)
        summary["pairs"].append({
            "pair": f"{o['source_layer']}->{o['target_layer']}", "ids_equal": o["ids"] == th["ids"],
            "text_equal": o["text"] == th["text"], "tokens_softscope": len(o["ids"]), "tokens_authors": len(th["ids"]),
            "first_different_token": first_diff, "embeddings_pass_first_different_token": emb_diff,
            "authors_text": th["text"], "softscope_text": o["text"], "embeddings_text": emb["text"]})
    (out / "compare.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    print(f"target prompt ids equal: {summary['target_ids_equal']}")
    for p in summary["pairs"]:
        print(f"{p['pair']:>7}: ids {'equal' if p['ids_equal'] else 'DIFFER at ' + str(p['first_different_token'])}"
              f" ({p['tokens_softscope']}/{p['tokens_authors']} tokens), text {'equal' if p['text_equal'] else 'differs'};"
              f" embeddings pass differs at token {p['embeddings_pass_first_different_token']}")
        print(f"         authors:   {p['authors_text'][:90]!r}\n         softscope: {p['softscope_text'][:90]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("side", choices=("softscope", "authors", "compare"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt", help="soft prompt file (softscope side)")
    ap.add_argument("--model", default="smollm2-135m", help="softscope alias, or (authors side) a model folder")
    ap.add_argument("--repo", help="clone of danaramati1/InSPEcT (authors side)")
    ap.add_argument("--pairs", default=PAIRS)
    ap.add_argument("--tokens", type=int, default=60)
    args = ap.parse_args()
    {"softscope": _softscope, "authors": _authors, "compare": _compare}[args.side](args)


if __name__ == "__main__":
    main()
