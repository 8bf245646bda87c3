"""Run docs/examples/*.sh command by command and capture what each prints into docs/examples/*.md.

    python tools/capture_examples.py                 # every example (make docs-examples)
    python tools/capture_examples.py tour wayward    # some of them

Each .sh holds one `softscope …` command per line (`#` lines are comments). The commands run from the repository
root with the installed `softscope`, progress bars off, on the real default model. The captured block (with when,
on which commit and CPU it ran) replaces the region between `<!-- example:NAME -->` and `<!-- /example:NAME -->` in
README.md and every page under docs/, so no transcript in README or docs is ever typed.
"""

from __future__ import annotations

import argparse
import datetime
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


def strip_progress(text: str) -> str:
    """Progress bars are not output: keep each line's last carriage-return segment, drop tqdm bars."""
    lines = [line.split("\r")[-1] for line in text.splitlines()]
    return "\n".join(line for line in lines if not BAR.search(line))


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


def capture(name: str, exe: str) -> list[Path]:
    sh = EXAMPLES / f"{name}.sh"
    env = {**os.environ, "TQDM_DISABLE": "1", "COLUMNS": "120", "TOKENIZERS_PARALLELISM": "false"}
    header = machine()
    blocks, t0 = [], time.time()
    for cmd in commands(sh):
        argv = shlex.split(cmd)
        if argv[0] != "softscope":
            raise SystemExit(f"{sh}: only softscope commands belong in an example: {cmd}")
        for i, a in enumerate(argv):  # a fresh output folder each time, so the capture shows a first run
            if a == "--out" and i + 1 < len(argv) and (ROOT / argv[i + 1]).exists() and "refused" not in argv[i + 1]:
                shutil.rmtree(ROOT / argv[i + 1])
        print(f"$ {cmd}", flush=True)
        p = subprocess.run([exe, *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True)
        text = strip_progress(p.stdout + p.stderr).rstrip()
        text = text.replace(str(ROOT) + "/", "")
        blocks.append(f"$ {cmd}\n{text}" + (f"\n(exit code {p.returncode})" if p.returncode else ""))
        print(text[-400:], flush=True)
    page = [f"*Output of `docs/examples/{name}.sh` (captured by `make docs-examples`, not typed) on {header}; "
            f"{time.time() - t0:.0f} s in all.*", "", "```text", "\n\n".join(blocks), "```"]
    done = []
    for target in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if fill(target, name, "\n".join(page)):
            done.append(target)
    if not done:
        raise SystemExit(f"no page has the markers <!-- example:{name} --> ... <!-- /example:{name} -->")
    return done


def fill(path: Path, name: str, block: str) -> bool:
    """Replace the region between the example's markers in one page; False when the page has none."""
    begin, end = f"<!-- example:{name} -->", f"<!-- /example:{name} -->"
    text = path.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    path.write_text(head + begin + "\n" + block + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", help="examples to run (default: all, tour first)")
    args = ap.parse_args()
    names = args.names or sorted((p.stem for p in EXAMPLES.glob("*.sh")), key=lambda n: (n != "tour", n))
    exe = shutil.which("softscope", path=str(Path(sys.executable).parent)) or "softscope"
    for n in names:
        print(f"{n}: filled " + ", ".join(str(p.relative_to(ROOT)) for p in capture(n, exe)))


if __name__ == "__main__":
    main()
