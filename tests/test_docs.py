"""The docs cannot drift from the code: every `softscope …` command shown in README.md and docs/ parses against
today's CLI (options exist, fixed choices are valid, numbers are numbers), the generated reference pages are
current, the site builds with `mkdocs build --strict` (a broken link fails), and it renders in headless chromium."""

from __future__ import annotations

import dataclasses
import importlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from softscope.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "docs" / "examples").glob("*.sh"))]
FENCE = re.compile(r"^```")
INLINE = re.compile(r"`(softscope [^`]+)`")
PLACEHOLDER = re.compile(r"^(\[.*\]|[A-Z][A-Z0-9_]*(\.\.\.)?|\.\.\.|…|<.*>|\{.*\}.*)$")


def config_choices() -> dict[str, tuple[str, ...]]:
    """Every config field with a fixed set of values, by field name (= the click parameter name)."""
    sys.path.insert(0, str(ROOT / "tools"))
    gen = importlib.import_module("gen_cli_docs")
    out: dict[str, tuple[str, ...]] = {}
    for ref in gen.CONFIGS:
        mod, name = ref.split(":")
        for f in dataclasses.fields(getattr(importlib.import_module(mod), name)):
            if "choices" in f.metadata:
                out[f.name] = tuple(f.metadata["choices"])
    return out


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every `softscope …` line in a code block or .sh file and every inline `softscope …`."""
    found = []
    for page in PAGES:
        rel = page.relative_to(ROOT)
        lines = page.read_text(encoding="utf-8").splitlines()
        in_code = page.suffix == ".sh"
        buf, start = "", 0
        for i, line in enumerate(lines, 1):
            if page.suffix == ".md" and FENCE.match(line):
                in_code = not in_code
                continue
            if in_code:
                text = line.strip()
                if text.startswith("$ "):
                    text = text[2:]
                if buf or text.startswith("softscope "):
                    start = start or i
                    buf += text.rstrip("\\").rstrip() + " "
                    if not text.endswith("\\"):
                        found.append((f"{rel}:{start}", buf.strip()))
                        buf, start = "", 0
            else:
                found += [(f"{rel}:{i}", m) for m in INLINE.findall(line)]
    return found


def check(command: str, choices: dict[str, tuple[str, ...]]) -> str | None:
    """None when the command parses against the CLI, else what is wrong."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError as e:
        return f"cannot split: {e}"
    cmd: click.Command = cli
    i = 1
    while isinstance(cmd, click.Group) and i < len(tokens):
        name = tokens[i]
        if PLACEHOLDER.match(name) or name.startswith("-"):
            return None  # `softscope COMMAND --help`, `softscope --version`: nothing more to check
        sub = cmd.get_command(click.Context(cmd), name)
        if sub is None:
            return f"no command {name!r}"
        cmd, i = sub, i + 1
    params = {o: p for p in cmd.params if isinstance(p, click.Option) for o in [*p.opts, *p.secondary_opts]}
    params.update({"--help": None, "-h": None})
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if not tok.startswith("--") or PLACEHOLDER.match(tok):
            continue
        name, eq, value = tok.partition("=")
        if name not in params:
            return f"no option {name} on {cmd.name}"
        p = params[name]
        if p is None or p.is_flag:
            continue
        if not eq:
            if i >= len(tokens):
                return f"{name} needs a value"
            value, i = tokens[i], i + 1
        if PLACEHOLDER.match(value) or "…" in value:
            continue
        if p.name in choices and value not in choices[p.name]:
            return f"{name} {value!r} is not one of {', '.join(choices[p.name])}"
        if isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType)) and not p.multiple:
            try:
                p.type.convert(value, p, None)
            except click.BadParameter:
                return f"{name} {value!r} is not a number"
    return None


def test_every_documented_command_parses():
    choices = config_choices()
    commands = documented_commands()
    assert len(commands) >= 40  # README, every method page and the example scripts show commands
    bad = [f"{where}: {c}  ->  {why}" for where, c in commands if (why := check(c, choices))]
    assert not bad, "\n".join(bad)


def test_the_checker_catches_a_renamed_option_and_a_bad_choice():
    choices = config_choices()
    assert check("softscope describe runs/x --layers every:3 --n-targets 2", choices) is None
    assert check("softscope describe runs/x --n-target 2", choices) == "no option --n-target on describe"
    assert check("softscope train --bf16-autocast maybe --out x", choices).startswith("--bf16-autocast 'maybe'")
    assert check("softscope train --steps many --out x", choices) == "--steps 'many' is not a number"
    assert check("softscope bias run --feature 'punct:!!' --strengths 0,1 --out runs/b", choices) is None
    assert check("softscope bias walk", choices) == "no command 'walk'"


@pytest.mark.parametrize("tool", ["gen_cli_docs.py", "gen_records_docs.py"])
def test_generated_reference_pages_are_current(tool):
    r = subprocess.run([sys.executable, str(ROOT / "tools" / tool), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_bytes()) <= 12_288


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mkdocs is not installed (pip install '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir", str(out)],
                       cwd=ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_docs_build_strict(site):
    for page in ("index.html", "getting-started/index.html", "describe/index.html", "cli/index.html",
                 "formats/index.html", "api/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "index.html").read_text()
    assert "DescribeConfig" in api and "TrainConfig" in api  # mkdocstrings rendered the docstrings


def test_docs_site_in_chromium(site, tmp_path):
    from test_browser import CHROMIUM, chromium

    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    from PIL import Image

    for page, name, text in (("index.html", "docs-landing.png", "What task does the model"),
                             ("describe/index.html", "docs-describe.png", "InSPEcT")):
        url = (site / page).resolve().as_uri()
        dom = chromium("--dump-dom", url, tmp_path=tmp_path)
        assert text in dom
        shot = tmp_path / name
        chromium(f"--screenshot={shot}", "--window-size=1200,900", url, tmp_path=tmp_path)
        img = Image.open(shot).convert("L")
        assert img.size == (1200, 900) and len(img.getcolors(maxcolors=1 << 20) or []) > 20  # not a blank page
