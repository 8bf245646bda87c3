"""A real report in a real browser: headless Debian chromium parses it offline, the DOM holds the expected
sections and numbers, and a screenshot of it is not blank. Skipped (with the reason) when chromium is missing;
CI installs it (`apt-get install -y chromium`)."""

import html
import re
import shutil
import subprocess

import pytest

from softscope.report.html import build_report
from softscope.report.parts import fmt
from softscope.engine.runs import read_json

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome")
                 if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-extensions",
         "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-component-update",
         "--mute-audio", "--hide-scrollbars"]


def chromium(*args, tmp_path):
    """Run headless chromium with its own profile dir; returns stdout (the DOM for --dump-dom)."""
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from test_report import make_run

    run, _, _ = make_run(tmp_path_factory.mktemp("browser"))
    return run, build_report(run)


def test_dom_holds_sections_and_numbers(report, tmp_path):
    run, path = report
    dom = chromium("--dump-dom", path.resolve().as_uri(), tmp_path=tmp_path)
    assert dom.count("<section") >= 4
    for sid in ("run", "training", "explain", "describe"):
        assert f'id="{sid}"' in dom, sid
    summ = read_json(run / "train_summary.json")
    card = re.search(r'data-key="final accuracy">([^<]+)<', dom)
    assert card and card.group(1) == fmt(summ["final_accuracy"])
    ex = read_json(run / "explain" / "explain_summary.json")
    for r in ex["readings"]:
        assert html.escape(r["text"], quote=False) in dom
        assert fmt(r["faithfulness"]["agreement"]) in dom
    cells = re.findall(r'<td class="cell"[^>]*title="source layer', dom)  # the hover texts survived parsing
    assert len(cells) == 4
    assert dom.count("data:image/png;base64,") >= 3


def test_screenshot_is_not_blank(report, tmp_path):
    from PIL import Image

    _, path = report
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,1600", path.resolve().as_uri(), tmp_path=tmp_path)
    import numpy as np

    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1600)
    px = np.asarray(img.resize((300, 400))).reshape(-1, 3)
    colours = len(np.unique(px, axis=0))
    non_white = float((px.min(-1) < 235).mean())
    assert colours > 50, f"only {colours} colours: blank page?"
    assert non_white > 0.05, f"{non_white:.1%} non-white pixels: blank page?"
    # the page header (dark blue band at the top) is drawn: the page really rendered, not an error page
    top = np.asarray(img.crop((0, 0, 1200, 40))).reshape(-1, 3)
    assert (top.max(-1) < 120).mean() > 0.5
