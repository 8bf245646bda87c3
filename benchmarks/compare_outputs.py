"""Run a fixed set of CLI commands on the tiny test model at two commits and diff every file they write (#28).

Issue #28's acceptance asks that every existing command's output on a fixed tiny run is identical before and after
the refactor, apart from times and dates. This script builds the tiny Llama and the tiny task of tests/conftest.py
once (an HF folder and a JSONL folder shared by both sides), checks out each commit as a git worktree, runs the
same commands there (`python -m softscope.cli`, PYTHONPATH=<worktree>/src, this venv, 1 thread), and compares the
two output trees: JSON/JSONL with time-like keys dropped, text with times, dates and paths masked, safetensors
tensor by tensor, PNGs pixel by pixel. It writes a Markdown report.

    .venv/bin/python benchmarks/compare_outputs.py --old f025c47 --new HEAD \\
        --md benchmarks/results/compare_outputs.md

`--new-tree DIR` runs the new side from a source tree as it is (uncommitted changes included; `.` for this one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "Sentence : {text} Label :"
# keys whose values are wall-clock times, dates, hosts or versions: dropped before comparing
TIME_KEY = re.compile(r"(^|_)(seconds|secs|time|times|date|created|started|finished|elapsed|timestamp|when|wall|"
                      r"host|hostname|pid|commit|git|python|torch|transformers|platform|version|versions|cpu|"
                      r"threads|load|machine)($|_)", re.I)
MASKS = [(re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:?\d\d|Z)?"), "<DATETIME>"),
         (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<TIME>"),
         (re.compile(r"\b\d+(\.\d+)?\s?(s|ms|min|seconds|it/s|s/it)\b"), "<DURATION>"),
         (re.compile(r'(data-key="[^"]*(seconds|time)[^"]*">)[^<]*'), r"\1<TIME>"),
         (re.compile(r"(<td>[^<]*seconds[^<]*</td><td>)[^<]*"), r"\1<TIME>"),
         (re.compile(r"\b[0-9a-f]{40}\b|\b[0-9a-f]{7,12}\b(?=[^/\w]|$)"), "<HASH>")]


# differences already traced to a commit: (pattern on "file: reason", explanation)
KNOWN = [
    (re.compile(r"\.json`: \.init_file: added$|\.safetensors`: tensor names \['init', 'prompt'\] -> \['prompt'\]; "
                r"the old 'init' tensor equals the new init/[0-9a-f]{16}\.safetensors; metadata \.softscope\.init_file: "
                r"added$|/init/[0-9a-f]{16}\.safetensors`: only in new$"),
     "#27 (08ea588, b8200f1): a prompt file now holds exactly one tensor; the init it was trained from moved to "
     "`init/<digest>.safetensors` beside it, named by the new `init_file` key of its .json. The prompt tensors are "
     "identical and each old `init` tensor equals the new init file (checked)."),
    (re.compile(r"\.jsonl?`: \d+ value\(s\), every one nan -> null \(first: [^)]*\)$"),
     "#28: run files hold standard JSON; a value that does not exist (a correlation over constant scores or too few "
     "points, a rate over zero eligible examples) is written as null instead of NaN (engine.runs.finite)."),
    (re.compile(r"report\.html`: \d spot\(s\) differ \(the first at line \d+\): "
                r"(after '[^']*_summary\.json</td>': '<td>—' -> '<td>[0-9.]+'(; |$))+$"),
     "#29 (354b764): the report's Sub-runs table reads a folder's facts through engine/readers.run_facts, which "
     "falls back to the last checkpoint's accuracy when a summary has no top-level one (describe_summary.json, a "
     "bias prompt's train_summary.json): that cell went from '—' to the number."),
]


def commands(model: str, task: str) -> list[tuple[str, list[str]]]:
    """(name, argv) in order; later commands read what earlier ones wrote (paths relative to the side's folder)."""
    data = ["--task", task, "--template", TEMPLATE]
    m = ["--model", model, "--device", "cpu"]
    return [
        ("train", ["train", *data, *m, "--tokens", "3", "--steps", "4", "--batch-size", "4", "--lr", "0.05",
                   "--checkpoint-every", "2", "--eval-examples", "8", "--out", "train"]),
        ("eval", ["eval", "train/prompt.safetensors", *data, "--device", "cpu", "--out", "eval"]),
        ("project", ["project", "train/prompt.safetensors", "--top-k", "3", "--device", "cpu"]),
        ("describe", ["describe", "train", "--layers", "band:1-2", "--n-targets", "2", "--max-new-tokens", "4",
                      "--references", "is the movie review positive or negative", "--device", "cpu"]),
        ("interpret", ["interpret", "train/prompt.safetensors", *data, "--device", "cpu", "--examples", "8",
                       "--out", "interpret"]),
        ("explain", ["explain", "train", *data, "--device", "cpu", "--readings", "projection,pez", "--pez-steps", "2",
                     "--examples", "8"]),
        ("pez", ["pez", *data, *m, "--tokens", "3", "--steps", "4", "--batch-size", "4", "--checkpoint-every", "2",
                 "--eval-examples", "4", "--fluency-weight", "0,0.5", "--holdout", "6", "--test-examples", "8",
                 "--out", "pez"]),
        ("rlprompt", ["rlprompt", *data, *m, "--tokens", "2", "--steps", "3", "--prompts-per-step", "3",
                      "--batch-size", "2", "--hidden", "16", "--top-k", "8", "--eval-every", "2", "--eval-examples",
                      "4", "--holdout", "6", "--test-examples", "4", "--fluency-weight", "0,1", "--out", "rl"]),
        ("wayward", ["wayward", "--task", task, "--template", "task", *m, "--steps", "4", "--batch-size", "4", "--lr", "0.05", "--gamma", "0,0.5,5",
                     "--test-examples", "8", "--target", "the movie was great and fun", "--target", "a bad film",
                     "--out", "wayward"]),
        ("wayward-compare", ["wayward-compare", "wayward", "--out", "wayward-compare"]),
        ("bias make-data", ["bias", "make-data", "--task", task, "--feature", "word:Spielberg", "--strength", "0.5",
                            "--favoured", "positive", "--out", "bias-data"]),
        ("bias run", ["bias", "run", "--task", task, *m, "--feature", "word:Spielberg", "--favoured", "positive",
                      "--strengths", "0,1", "--seeds", "1", "--train-examples", "16", "--tokens", "2", "--steps", "2",
                      "--batch-size", "4", "--heldout", "8", "--layers", "0:1,1:2", "--n-targets", "1", "--demos",
                      "2", "--max-new-tokens", "3", "--out", "bias"]),
        ("tradeoff", ["tradeoff", *data, *m, "--examples", "8", "--soft-tokens", "2", "--soft-steps", "2",
                      "--pez-weights", "0", "--pez-tokens", "2", "--pez-steps", "2", "--pez-batch-size", "4",
                      "--rl-weights", "0", "--rl-tokens", "2", "--rl-steps", "2", "--rl-prompts-per-step", "2",
                      "--rl-batch-size", "2", "--rl-eval-every", "1", "--rl-selection-examples", "4",
                      "--selection-examples", "4", "--holdout", "6", "--out", "tradeoff"]),
        ("report train", ["report", "train", "--out", "train/report.html"]),
        ("report pez", ["report", "pez", "--out", "pez/report.html"]),
        ("report wayward", ["report", "wayward", "--out", "wayward/report.html"]),
        ("report bias", ["report", "bias", "--out", "bias/report.html"]),
    ]


def build_inputs(where: Path) -> tuple[str, str]:
    """The tiny Llama as an HF folder and the tiny task as train/test JSONL, built by tests/conftest.py."""
    sys.path.insert(0, str(ROOT / "tests"))
    import torch

    torch.set_num_threads(1)
    from conftest import make_adapter, tiny_task

    a = make_adapter("llama")
    model = where / "tiny-llama"
    a.model.save_pretrained(model)
    a.tokenizer.save_pretrained(model)
    t = tiny_task()
    task = where / "tinytask"
    task.mkdir()
    for split, rows in (("train", t.train), ("test", t.test)):
        (task / f"{split}.jsonl").write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n"
                                                     for e in rows))
    return str(model), str(task)


def run_side(commit: str, where: Path, model: str, task: str, tree: Path | None = None) -> dict:
    """Check out `commit` as a worktree (or use the source tree `tree` as it is) and run every command there;
    returns {name: (rc, stdout, stderr, s)}."""
    wt = tree or where / "src-tree"
    if tree is None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(wt), commit], check=True)
    out = where / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(wt / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = {}
    for name, argv in commands(model, task):
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "softscope.cli", *argv], cwd=out, env=env, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=900)
        res[name] = (p.returncode, p.stdout, p.stderr, time.time() - t0)
        print(f"  {commit} {name}: rc {p.returncode} ({time.time() - t0:.0f} s)", flush=True)
        (out / f"_stdout_{name.replace(' ', '_')}.txt").write_text(p.stdout)
    return res


def mask(text: str, roots: list[str]) -> str:
    for r in roots:
        text = text.replace(r, "<ROOT>")
    for pat, rep in MASKS:
        text = pat.sub(rep, text)
    return text


def strip(obj, roots: list[str]):
    """JSON with time-like keys dropped and paths/dates masked in strings."""
    if isinstance(obj, dict):
        return {k: strip(v, roots) for k, v in obj.items() if not TIME_KEY.search(k)}
    if isinstance(obj, list):
        return [strip(v, roots) for v in obj]
    if isinstance(obj, str):
        return mask(obj, roots)
    return obj


def json_diffs(a, b, path: str = "") -> list[str]:
    """Every place two JSON values differ, as 'key.path: old -> new' (or added / removed)."""
    if type(a) is not type(b):
        return [f"{path or '.'}: {str(a)[:60]} -> {str(b)[:60]}"]
    if isinstance(a, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            if k not in b:
                out.append(f"{path}.{k}: removed")
            elif k not in a:
                out.append(f"{path}.{k}: added")
            elif a[k] != b[k]:
                out += json_diffs(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items -> {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) if x != y for d in json_diffs(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path or '.'}: {str(a)[:60]} -> {str(b)[:60]}"]


def first_diff(a, b) -> str:
    """All differences of two JSON values in one line (the first four shown)."""
    d = json_diffs(a, b)
    if d and all(x.endswith(": nan -> None") for x in d):  # every difference, not only the first four
        return f"{len(d)} value(s), every one nan -> null (first: {d[0].rsplit(':', 1)[0]})"
    return "; ".join(d[:4]) + (f"; … {len(d) - 4} more" if len(d) > 4 else "")


def compare_file(a: Path, b: Path, roots: list[str]) -> str | None:
    """None when equal after normalisation, else a one-line reason."""
    suf = a.suffix
    if suf == ".json":
        x, y = (strip(json.loads(p.read_text()), roots) for p in (a, b))
        return None if x == y else first_diff(x, y)
    if suf == ".jsonl":
        x, y = ([strip(json.loads(line), roots) for line in p.read_text().splitlines() if line.strip()]
                for p in (a, b))
        return None if x == y else first_diff(x, y)
    if suf == ".safetensors":
        from safetensors import safe_open

        out = []
        with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
            if set(fa.keys()) != set(fb.keys()):
                out.append(f"tensor names {sorted(fa.keys())} -> {sorted(fb.keys())}")
                if set(fa.keys()) - set(fb.keys()) == {"init"}:  # #27: the init moved to its own file
                    out.append(_moved_init(fa.get_tensor("init"), b))
            for k in set(fa.keys()) & set(fb.keys()):
                ta, tb = fa.get_tensor(k), fb.get_tensor(k)
                if ta.shape != tb.shape or not bool((ta == tb).all()):
                    out.append(f"tensor {k} differs")
            ma, mb = ({k: strip(_maybe_json(v), roots) for k, v in (f.metadata() or {}).items()
                       if not TIME_KEY.search(k)} for f in (fa, fb))
            if ma != mb:
                out.append("metadata " + first_diff(ma, mb))
        return "; ".join(out) or None
    if suf == ".png":
        if a.read_bytes() == b.read_bytes():
            return None
        import numpy as np
        from PIL import Image

        x, y = (np.asarray(Image.open(p).convert("RGBA")) for p in (a, b))
        if x.shape == y.shape and (x == y).all():
            return None  # same pixels, other metadata
        return f"pixels differ ({x.shape} vs {y.shape})"
    try:
        x, y = (mask(p.read_text(), roots) for p in (a, b))
    except UnicodeDecodeError:
        return None if a.read_bytes() == b.read_bytes() else "bytes differ"
    if suf == ".html":  # embedded plots: compare the text around them, the plots are compared as PNG files
        x, y = (re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "<PNG>", t) for t in (x, y))
    if x == y:
        return None
    import difflib

    ta, tb = (re.split(r"(?=<)|\n", t) for t in (x, y))  # HTML tags and lines: small units to align
    spots = [op for op in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes() if op[0] != "equal"]
    i = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    line = x.count("\n", 0, i) + 1
    shown = "; ".join(f"after {''.join(ta[max(0, i1 - 2):i1])[-40:]!r}: {''.join(ta[i1:i2])[:60]!r} -> "
                      f"{''.join(tb[j1:j2])[:60]!r}" for _, i1, i2, j1, j2 in spots[:4])
    return f"{len(spots)} spot(s) differ (the first at line {line}): {shown}"


def _moved_init(old, new_prompt: Path) -> str:
    """Whether the old file's 'init' tensor equals the init file the new prompt's .json names."""
    from safetensors.torch import load_file

    meta = new_prompt.with_suffix(".json")
    name = json.loads(meta.read_text()).get("init_file") if meta.exists() else None
    if not name or not (new_prompt.parent / name).exists():
        return "its init file is missing"
    t = list(load_file(str(new_prompt.parent / name)).values())
    same = len(t) == 1 and t[0].shape == old.shape and bool((t[0] == old).all())
    return f"the old 'init' tensor {'equals' if same else 'DIFFERS FROM'} the new {name}"


def _maybe_json(v: str):
    try:
        return json.loads(v)
    except (ValueError, TypeError):
        return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="f025c47")
    ap.add_argument("--new", default="HEAD")
    ap.add_argument("--md", default=str(ROOT / "benchmarks" / "results" / "compare_outputs.md"))
    ap.add_argument("--new-tree", type=Path, default=None,
                    help="run the new side from this source tree as it is (e.g. . for uncommitted changes)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    rev = {s: subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", c], capture_output=True, text=True,
                             check=True).stdout.strip() for s, c in (("old", args.old), ("new", args.new))}
    tree = args.new_tree.resolve() if args.new_tree else None
    if tree:
        rev["new"] = f"the tree {tree}"
    base = Path(tempfile.mkdtemp(prefix="compare-outputs-"))
    try:
        model, task = build_inputs(base)
        res = {}
        for side in ("old", "new"):
            (base / side).mkdir()
            print(f"{side} = {rev[side]}", flush=True)
            res[side] = run_side(rev[side], base / side, model, task, tree if side == "new" else None)
        roots = [str(base / "old" / "out"), str(base / "new" / "out"), str(base / "old" / "src-tree"),
                 str(base / "new" / "src-tree"), *([str(tree)] if tree else []), str(base)]
        write_report(args.md, rev, res, base, roots)
    finally:
        for side in ("old", "new"):
            if (base / side / "src-tree").exists():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base / side / "src-tree")])
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print("kept", base)


def write_report(md: str, rev: dict, res: dict, base: Path, roots: list[str]) -> None:
    a, b = base / "old" / "out", base / "new" / "out"
    files = sorted({p.relative_to(a) for p in a.rglob("*") if p.is_file()} |
                   {p.relative_to(b) for p in b.rglob("*") if p.is_file()})
    same, diff, only = [], [], []
    for f in files:
        if f.name.endswith(".lock") or "__pycache__" in f.parts:
            continue
        if not (a / f).exists() or not (b / f).exists():
            only.append(f"`{f}`: only in {'new' if (b / f).exists() else 'old'}")
            continue
        why = compare_file(a / f, b / f, roots)
        (diff.append(f"`{f}`: {why}") if why else same.append(str(f)))
    lines = [f"# Command outputs before and after ({rev['old']} → {rev['new']})", "",
             "Written by `benchmarks/compare_outputs.py`: the tiny Llama and tiny task of tests/conftest.py, the same",
             "commands at both commits (one process each, 1 thread, CPU, float32), every written file compared after",
             "dropping time-like JSON keys (`" + TIME_KEY.pattern[:60] + "…`) and masking dates, times, durations,",
             "hashes and the two scratch folders in text; safetensors tensor by tensor, PNGs by pixels.", "",
             "| command | old rc | new rc |", "|---|---|---|"]
    for name in res["old"]:
        lines.append(f"| {name} | {res['old'][name][0]} | {res['new'][name][0]} |")
    lines += ["", f"**{len(same)} files identical, {len(diff)} differ, {len(only)} on one side only.**", ""]
    groups: dict[str, list[str]] = {}
    for d in diff + only:
        why = next((text for pat, text in KNOWN if pat.search(d)), "not explained yet")
        groups.setdefault(why, []).append(d)
    for why, items in sorted(groups.items(), key=lambda kv: kv[0] == "not explained yet"):
        lines += [f"## {len(items)} difference(s): {why}", ""]
        lines += [f"- {d}" for d in items[:6]] + ([f"- … and {len(items) - 6} more of the same kind"]
                                                  if len(items) > 6 else []) + [""]
    failed = [(s, n, r[2]) for s in res for n, r in res[s].items() if r[0] != 0]
    if failed:
        lines += ["## Commands that failed", ""]
        lines += [f"- {s} `{n}`: `{mask(err.strip().splitlines()[-1] if err.strip() else '', roots)[:200]}`"
                  for s, n, err in failed]
        lines.append("")
    Path(md).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
