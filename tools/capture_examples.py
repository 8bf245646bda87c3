"""Run docs/examples/*.sh command by command and capture what each prints into docs/examples/*.md.

    python tools/capture_examples.py                 # every example (make docs-examples)
    python tools/capture_examples.py tour wayward    # some of them

Each .sh holds one `softscope …` command per line (`#` lines are comments). The commands run from the repository
root with the installed `softscope`, progress bars stripped, on the real default model; docs/examples/NAME.json
keeps what each printed and when, on which commit and CPU. The rendered block replaces the region between
`<!-- example:NAME -->` (or `<!-- example:NAME only=train,describe -->`, a subset of the commands) and
`<!-- /example:NAME -->` in README.md and every page under docs/, so no transcript there is ever typed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


def machine() -> str:
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · commit {commit.strip()}"
            f"{' (+ uncommitted changes)' if dirty else ''} · torch {torch.__version__} · CPU "
            f"{torch.backends.cpu.get_cpu_capability()} · {os.environ.get('OMP_NUM_THREADS', 'all')} threads · "
            f"load {load} at start")


BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+ \[|it/s\]|s/it\]")


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_progress(text: str) -> str:
    """Progress bars are not output: keep each line's last carriage-return segment, drop tqdm bars and the
    cursor movements and blank lines they leave behind."""
    lines = [ANSI.sub("", line.split("\r")[-1]).rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if BAR.search(line) or (not line and (not out or not out[-1])):
            continue
        out.append(line)
    return "\n".join(out).strip("\n")


def commands(sh: Path) -> list[str]:
    out, buf = [], ""
    for line in sh.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        buf += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            out.append(buf.strip())
            buf = ""
    return out


def capture(name: str, exe: str) -> Path:
    """Run the example's commands; write docs/examples/NAME.json (when, where, each command and its output)."""
    sh = EXAMPLES / f"{name}.sh"
    env = {**os.environ, "TQDM_DISABLE": "1", "COLUMNS": "120", "TOKENIZERS_PARALLELISM": "false"}
    record = {"example": f"docs/examples/{name}.sh", "captured": machine(), "commands": []}
    t0 = time.time()
    for cmd in commands(sh):
        argv = shlex.split(cmd)
        if argv[0] != "softscope":
            raise SystemExit(f"{sh}: only softscope commands belong in an example: {cmd}")
        for i, a in enumerate(argv):  # a fresh output folder each time, so the capture shows a first run
            if a == "--out" and i + 1 < len(argv) and (ROOT / argv[i + 1]).exists() and "refused" not in argv[i + 1]:
                shutil.rmtree(ROOT / argv[i + 1])
        print(f"$ {cmd}", flush=True)
        p = subprocess.run([exe, *argv[1:]], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)  # one stream, in the order a terminal shows it
        text = strip_progress(p.stdout).rstrip().replace(str(ROOT) + "/", "")
        record["commands"].append({"command": cmd, "output": text, "exit_code": p.returncode})
        print(text[-400:], flush=True)
    record["seconds"] = round(time.time() - t0)
    out = EXAMPLES / f"{name}.json"
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


MARKER = re.compile(r"<!-- example:(?P<name>[\w-]+)(?: only=(?P<only>[\w,-]+))? -->")


def render(record: dict, only: list[str] | None) -> str:
    """The captured block: a line saying when and where it ran, then `$ command` and its output."""
    blocks, shown_subs = [], set()
    for c in record["commands"]:
        sub = shlex.split(c["command"])[1]
        if only and (sub not in only or sub in shown_subs):
            continue  # a subset shows each named command's first run only
        shown_subs.add(sub)
        code = f"\n(exit code {c['exit_code']})" if c["exit_code"] else ""
        blocks.append(f"$ {c['command']}\n{strip_progress(c['output'])}{code}")
    shown = "" if not only else f" (the {', '.join(only)} steps)"
    return "\n".join([f"*Output of `{record['example']}`{shown}, captured by `make docs-examples` (not typed) on "
                      f"{record['captured']}; {record['seconds']} s in all.*", "", "```text",
                      "\n\n".join(blocks), "```"])


def fill(path: Path, name: str, record: dict) -> bool:
    """Replace every region between the example's markers in one page; False when the page has none."""
    text = path.read_text(encoding="utf-8")
    end = f"<!-- /example:{name} -->"
    out, pos, hit = [], 0, False
    for m in MARKER.finditer(text):
        if m.group("name") != name or m.start() < pos:
            continue
        close = text.index(end, m.end())
        only = m.group("only").split(",") if m.group("only") else None
        out += [text[pos:m.end()], "\n", render(record, only), "\n"]
        pos, hit = close, True
    if hit:
        path.write_text("".join(out) + text[pos:], encoding="utf-8")
    return hit


def fill_pages(name: str) -> list[Path]:
    record = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    done = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))] if fill(p, name, record)]
    if not done:
        raise SystemExit(f"no page has the markers <!-- example:{name} --> ... <!-- /example:{name} -->")
    return done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", help="examples to run (default: all, tour first)")
    ap.add_argument("--fill-only", action="store_true", help="refill the pages from the last capture (NAME.json)")
    args = ap.parse_args()
    names = args.names or sorted((p.stem for p in EXAMPLES.glob("*.sh")), key=lambda n: (n != "tour", n))
    exe = shutil.which("softscope", path=str(Path(sys.executable).parent)) or "softscope"
    for n in names:
        if not args.fill_only:
            capture(n, exe)
        print(f"{n}: filled " + ", ".join(str(p.relative_to(ROOT)) for p in fill_pages(n)))


if __name__ == "__main__":
    main()
