"""softscope serve in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium; no browser
download): the runs page, the InSPEcT heatmap (hover, click to pin), two checkpoints side by side, and a live
description streaming in, a prompt file uploaded. Each step saves a screenshot (SOFTSCOPE_SCREENSHOTS=docs/img
regenerates docs/img/serve-*.png). Skipped, with the reason, when chromium, its
driver or selenium is missing (CI installs them: `apt-get install -y chromium chromium-driver`)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
DRIVER = shutil.which("chromedriver")
SELENIUM = importlib.util.find_spec("selenium") is not None
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"),
    pytest.mark.skipif(DRIVER is None, reason="chromedriver is not installed (apt-get install -y chromium-driver)"),
    pytest.mark.skipif(not SELENIUM, reason="selenium is not installed (pip install -e '.[test]')"),
]
# screenshots go to a temporary folder; SOFTSCOPE_SCREENSHOTS=docs/img regenerates the committed ones
SHOTS_ENV = os.environ.get("SOFTSCOPE_SCREENSHOTS")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from test_serve import serve_tiny_run

    with serve_tiny_run(tmp_path_factory.mktemp("serve-browser"), batch_wait_ms=5) as (port, run, _, _):
        yield f"http://127.0.0.1:{port}", run


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return Path(SHOTS_ENV) if SHOTS_ENV else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser(tmp_path_factory, shots):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 "--disable-extensions", "--no-first-run", "--disable-background-networking", "--hide-scrollbars",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.shots = shots
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=60.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def text(driver, css: str) -> str:
    """The text of the first element matching `css`, read in one step in the page ("" when there is none), so a
    re-rendered element cannot go stale between finding and reading it."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                                 css)


def shot(driver, name, section=None):
    """Save a screenshot (scrolled to `section`) and check it is a real, non-blank page."""
    from PIL import Image

    folder = driver.shots
    folder.mkdir(parents=True, exist_ok=True)
    if section:
        driver.execute_script(f"document.getElementById('{section}').scrollIntoView()")
    path = folder / f"serve-{name}.png"
    driver.save_screenshot(str(path))
    img = Image.open(path).convert("RGB")
    assert img.size[0] >= 1000 and len(img.resize((200, 150)).getcolors(200 * 150)) > 20, f"{path}: blank page?"


def cuts(run, step):
    from softscope.engine.runs import read_jsonl

    return {(r["source_layer"], r["target_layer"]): r["cut"] for r in read_jsonl(run / "describe" / "descriptions.jsonl")
            if r["step"] == step}


def test_runs_page_lists_and_filters(site, browser):
    from selenium.webdriver.common.by import By

    url, _ = site
    browser.get(url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert len(rows) == 2 and {r.find_elements(By.TAG_NAME, "td")[1].text for r in rows} == {"train", "describe"}
    shot(browser, "runs")
    browser.find_element(By.ID, "filter").send_keys("describe")
    visible = [r for r in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr") if r.is_displayed()]
    assert len(visible) == 1 and visible[0].find_elements(By.TAG_NAME, "td")[1].text == "describe"
    browser.find_element(By.CSS_SELECTOR, "#runs th:nth-child(2)").click()  # sorting keeps every row
    assert len(browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 2


def test_heatmap_hover_and_click_pin_a_description(site, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, run = site
    browser.get(url + "/run/0/run")
    cells = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '.panel[data-panel="0"] td.cell'))
    assert len(cells) == 3  # 3 layer pairs
    want = cuts(run, 4)  # the last checkpoint is shown first
    box = browser.find_element(By.CSS_SELECTOR, '.panel[data-panel="0"] .desc')
    first, second = cells[0], cells[1]
    ActionChains(browser).move_to_element(first).perform()
    pair = (int(first.get_attribute("data-src")), int(first.get_attribute("data-tgt")))
    wait_for(browser, lambda d: f"source layer {pair[0]} → target layer {pair[1]}" in box.text)
    assert want[pair] in box.text
    second.click()  # pinned: moving over another cell leaves the pinned text
    pinned = (int(second.get_attribute("data-src")), int(second.get_attribute("data-tgt")))
    ActionChains(browser).move_to_element(first).perform()
    time.sleep(0.2)
    assert f"source layer {pinned[0]} → target layer {pinned[1]}" in box.text and want[pinned] in box.text
    assert "pinned" in second.get_attribute("class")
    assert browser.find_elements(By.CSS_SELECTOR, "#loss-chart svg polyline")  # the training curve was drawn
    assert browser.find_elements(By.CSS_SELECTOR, "#acc-chart svg circle")
    shot(browser, "heatmap", "describe")


def test_two_checkpoints_side_by_side(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, run = site
    browser.get(url + "/run/0/run")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '.panel[data-panel="0"] td.cell'))
    right = browser.find_element(By.CSS_SELECTOR, '.panel[data-panel="1"]')
    assert not right.is_displayed()
    browser.find_element(By.ID, "compare").click()
    wait_for(browser, lambda d: right.find_elements(By.CSS_SELECTOR, "td.cell"))
    Select(right.find_element(By.CSS_SELECTOR, "select.ck")).select_by_index(1)  # step 2
    wait_for(browser, lambda d: text(d, '.panel[data-panel="1"] .heat .note').startswith("step 2 ·"))
    # the left panel (reloaded when the second one opened) still shows the last checkpoint
    wait_for(browser, lambda d: text(d, '.panel[data-panel="0"] .heat .note').startswith("step 4 ·"))
    cell = right.find_elements(By.CSS_SELECTOR, "td.cell")[0]
    cell.click()
    pair = (int(cell.get_attribute("data-src")), int(cell.get_attribute("data-tgt")))
    assert cuts(run, 2)[pair] in right.find_element(By.CSS_SELECTOR, ".desc").text
    Select(browser.find_element(By.ID, "score")).select_by_visible_text("class_rate")
    wait_for(browser, lambda d: "class_rate from" in text(d, '.panel[data-panel="1"] .heat .note'))
    shot(browser, "compare", "describe")


def test_live_description_streams_in_and_equals_describe(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from softscope.engine.runs import read_jsonl

    url, run = site
    browser.get(url + "/live?prompt=0/run/checkpoints/step-00004.safetensors")
    assert Select(browser.find_element(By.ID, "prompt")).first_selected_option.get_attribute("value") == \
        "0/run/checkpoints/step-00004.safetensors"
    target = browser.find_element(By.ID, "target")
    target.clear()
    target.send_keys("the task : {prompt}")
    layers = browser.find_element(By.ID, "layers")
    layers.clear()
    layers.send_keys("1:1,2:2,3:1")
    tokens = browser.find_element(By.ID, "tokens")
    tokens.clear()
    tokens.send_keys("6")
    Select(browser.find_element(By.ID, "stop")).select_by_visible_text("none")
    # count every change of the streamed cells: token-by-token streaming changes each row several times
    browser.execute_script("""
        window.__changes = 0;
        new MutationObserver(ms => { window.__changes += ms.length; })
          .observe(document.querySelector('#live-out tbody'), {subtree: true, childList: true, characterData: true});""")
    browser.find_element(By.ID, "run").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "status").get_attribute("data-done") == "1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#live-out tbody tr")
    want = {(r["source_layer"], r["target_layer"]): r for r in read_jsonl(run / "describe" / "descriptions.jsonl")
            if r["checkpoint"] == "checkpoints/step-00004.safetensors"}
    assert len(rows) == 3
    for tr in rows:
        pair_text, text, cut = (td.text for td in tr.find_elements(By.TAG_NAME, "td"))
        s, t = (int(x) for x in pair_text.split("→"))
        assert text == want[(s, t)]["text"].strip() and cut == want[(s, t)]["cut"]
    changes = browser.execute_script("return window.__changes")
    assert changes >= 3 * 3, changes  # rows created, then several token updates each
    shot(browser, "live")


def test_a_refused_live_request_shows_its_message(site, browser):
    from selenium.webdriver.common.by import By

    url, _ = site
    browser.get(url + "/live?prompt=0/run/checkpoints/step-00004.safetensors")
    target = browser.find_element(By.ID, "target")
    target.clear()
    target.send_keys("no marker here")
    browser.find_element(By.ID, "run").click()
    status = wait_for(browser, lambda d: d.find_element(By.ID, "status") if "refused" in
                      d.find_element(By.ID, "status").text else None)
    assert "422" in status.text and "{prompt}" in status.text
    json.dumps(status.text)


def test_uploading_a_prompt_file_adds_it_to_the_choices(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, run = site
    browser.get(url + "/live")
    browser.find_element(By.ID, "upload").send_keys(str(run / "checkpoints" / "step-00002.safetensors"))
    wait_for(browser, lambda d: "3 virtual tokens" in d.find_element(By.ID, "status").text)
    chosen = Select(browser.find_element(By.ID, "prompt")).first_selected_option
    assert chosen.get_attribute("value").startswith("upload:") and chosen.text == "uploaded: step-00002.safetensors"
