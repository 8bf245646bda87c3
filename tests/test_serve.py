"""softscope serve on a real uvicorn server (loopback, a free port) over a tiny run written by the real writers:
pages, the layer-grid API, live descriptions equal to `describe` token for token (alone and sharing a batch),
cancellation, and the security model (paths, token, limits, malformed bodies: each a 4xx, the server still up)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
import time
import urllib.parse

import pytest
import torch

from conftest import make_adapter, tiny_task

TARGET = "the task : {prompt}"
PAIRS = [(1, 1), (2, 2), (3, 1)]
REFS = ["what is the sentiment of the movie review", "classify the review as positive or negative"]


# ---- a tiny run and a running server ---------------------------------------------------------------------------
def make_run(root):
    """A tiny training run (3 checkpoints) described over 3 layer pairs with one user target prompt."""
    from softscope.engine.config import TrainConfig
    from softscope.engine.training import train
    from softscope.methods.describe import DescribeConfig, describe

    tiny, task = make_adapter("llama"), tiny_task()
    run = root / "run"
    # a random init and a small step keep this random model's descriptions words, not special tokens
    train(TrainConfig(task="tiny", tokens=3, steps=4, batch_size=4, lr=0.01, init="random", checkpoint_every=2,
                      eval_examples=0, final_eval="full", device="cpu"), run, adapter=tiny, task=task, progress=False)
    describe(run, DescribeConfig(layers=",".join(f"{s}:{t}" for s, t in PAIRS), target_prompt=TARGET,
                                 max_new_tokens=6, stop="none", classes=list(task.classes), references=REFS,
                                 task="tiny"), adapter=tiny, progress=False)
    return run, tiny


@contextlib.contextmanager
def running(app):
    """Serve `app` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the port."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", access_log=False,
                                           lifespan="on"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    t0 = time.time()
    while not server.started:
        assert time.time() - t0 < 20, "server did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        th.join(10)


def request(port, method, path, body=None, headers=None, raw_body: bytes | None = None):
    """(status, headers, body bytes) of one request; `path` goes on the wire exactly as given."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers={"content-type": "application/json", **(headers or {})})
    r = c.getresponse()
    out = r.status, dict(r.getheaders()), r.read()
    c.close()
    return out


def events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def live(port, prompt_ref, **kw):
    body = {"prompt": prompt_ref, "target_prompt": TARGET, "layers": ",".join(f"{s}:{t}" for s, t in PAIRS),
            "max_new_tokens": 6, "stop": "none", **kw}
    status, _, raw = request(port, "POST", "/api/describe", body)
    assert status == 200, raw
    evs = events(raw)
    assert evs[0][0] == "meta" and evs[-1][0] == "done", evs[-1]
    return evs


@contextlib.contextmanager
def serve_tiny_run(root, batch_wait_ms: int):
    """A tiny run written under `root`, served on a free loopback port: (port, run folder, model, app)."""
    from softscope.serve import ServeConfig, create_app
    from softscope.serve.live import Models

    run, tiny = make_run(root)
    app = create_app([root], ServeConfig(batch_wait_ms=batch_wait_ms), Models(preloaded={tiny.name: tiny}))
    with running(app) as port:
        yield port, run, tiny, app


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    with serve_tiny_run(root, batch_wait_ms=150) as (port, run, tiny, app):
        yield port, root, run, tiny, app


# ---- pages ------------------------------------------------------------------------------------------------------
def test_runs_page_lists_the_run_and_its_describe_folder(served):
    port, root, run, _, _ = served
    status, _, body = request(port, "GET", "/")
    page = body.decode()
    assert status == 200 and '<table id="runs"' in page
    assert page.count('<a href="/run/0/run">run</a>') == 1 and '<a href="/run/0/run/describe">describe</a>' in page
    assert "<td>train</td>" in page and "<td>describe</td>" in page and "<td>tiny</td>" in page


def test_run_page_has_training_tokens_and_inspect(served):
    port, _, run, tiny, _ = served
    status, _, body = request(port, "GET", "/run/0/run")
    page = body.decode()
    assert status == 200
    for part in ('id="training"', 'id="loss-chart"', 'id="tokens"', 'id="describe"', 'class="panel"'):
        assert part in page, part
    assert page.count("<tr><td>") >= 3 + 3  # 3 checkpoints, 3 virtual tokens
    data = json.loads(page.split('id="page-data">')[1].split("</script>")[0])
    assert [c["step"] for c in data["describe"]["checkpoints"]] == [0, 2, 4]
    assert [p[0] for p in data["training"]["accuracy"]] == [0, 2, 4]


def test_grid_api_returns_every_pair_with_its_text(served):
    from softscope.engine.runs import read_jsonl

    port, _, run, _, _ = served
    rows = [r for r in read_jsonl(run / "describe" / "descriptions.jsonl") if r["step"] == 4]
    q = urllib.parse.urlencode({"run": "0/run", "checkpoint": rows[0]["checkpoint"], "score": "class_rate"})
    status, _, body = request(port, "GET", f"/api/grid?{q}")
    grid = json.loads(body)
    assert status == 200 and grid["step"] == 4
    assert sorted((c[0], c[1]) for c in grid["cells"]) == sorted(PAIRS)
    by_pair = {(r["source_layer"], r["target_layer"]): r["cut"] for r in rows}
    for s, t, score, texts in grid["cells"]:
        assert texts[0]["text"] == by_pair[(s, t)]


def test_a_broken_run_folder_shows_an_error_on_its_page(served):
    """Broken files show their message where their part of the page would be; the rest renders; never a 500."""
    port, root, run, tiny, _ = served
    bad = root / "broken"
    (bad / "describe").mkdir(parents=True, exist_ok=True)
    (bad / "config.json").write_text('{"command": "train", "config": {}}')
    (bad / "train_summary.json").write_text('{"task": "tiny", "checkpoints": 5}')  # not a list
    (bad / "metrics.jsonl").write_text('{"event": "train", "step": 1, "loss": 2.0}\nnot json\n')
    (bad / "describe" / "describe_summary.json").write_text('{"task": "tiny", "checkpoints": []}')  # rows missing
    (bad / "eval_summary.json").write_text('{"accuracy": [')  # broken JSON: the eval section is left out
    status, _, body = request(port, "GET", "/run/0/broken")
    page = body.decode()
    assert status == 200 and "Traceback" not in page
    assert "could not read this part of the run: TypeError" in page  # the training part
    assert "describe/descriptions.jsonl is missing or unreadable" in page
    assert page.count('class="error"') == 2 and '<section id="eval"' not in page
    status, _, body = request(port, "GET", "/run/0/run")  # the good run still renders
    assert status == 200


# ---- live == describe ------------------------------------------------------------------------------------------
def _describe_ids(tiny, prompt):
    """What `softscope describe` generates for this checkpoint: the engine call describe_prompt makes."""
    from softscope.engine.patching import patch_generate_ids, source_states
    from softscope.engine.target_prompts import build

    tp = build(tiny, TARGET, prompt.n_tokens)
    src = sorted({s for s, _ in PAIRS})
    S = source_states(tiny, prompt.tensor, src, "embeddings", prompt.placement)
    stacked = torch.stack([S[src.index(s)] for s, _ in PAIRS])
    return patch_generate_ids(tiny, tp.ids, tp.placeholder_positions, stacked, [t for _, t in PAIRS], 6, "none", 64)


def test_live_equals_describe_token_for_token_alone(served):
    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.runs import read_jsonl

    port, _, run, tiny, _ = served
    ck = "checkpoints/step-00004.safetensors"
    evs = live(port, f"0/run/{ck}")
    done = evs[-1][1]
    assert done["batch_requests"] == 1
    rows = {(r["source_layer"], r["target_layer"]): r for r in read_jsonl(run / "describe" / "descriptions.jsonl")
            if r["checkpoint"] == ck}
    assert all(r["text"].split() for r in done["rows"])  # real words, not only special tokens
    assert {r["text"] for r in done["rows"]} == {"but but but but but but", "positive positive positive positive "
                                                 "positive positive"}
    for r in done["rows"]:  # the written describe run: same text and cut for every pair
        assert r["text"] == rows[(r["source_layer"], r["target_layer"])]["text"]
        assert r["cut"] == rows[(r["source_layer"], r["target_layer"])]["cut"]
    assert [r["ids"] for r in done["rows"]] == _describe_ids(tiny, SoftPrompt.load(run / ck))
    # the stream: one event per token, each row's text growing to its final text
    steps = [d for e, d in evs if e == "tokens"]
    assert [d["step"] for d in steps] == list(range(6))
    assert {k: v for d in steps[-1:] for k, v in d["texts"].items()} == {str(k): r["text"] for k, r in
                                                                         enumerate(done["rows"])}


def test_live_equals_describe_while_sharing_a_batch(served):
    """Four requests at once (two checkpoints, two each) share one engine batch; each gets its own rows back."""
    from softscope.engine.prompts import SoftPrompt

    port, _, run, tiny, app = served
    cks = ["checkpoints/step-00002.safetensors", "checkpoints/step-00004.safetensors"] * 2
    results = [None] * len(cks)

    def ask(i):
        results[i] = live(port, f"0/run/{cks[i]}")[-1][1]
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(cks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert max(r["batch_requests"] for r in results) >= 2  # they did share a batch
    differing = 0
    for ck, res in zip(cks, results):
        want = _describe_ids(tiny, SoftPrompt.load(run / ck))
        got = [r["ids"] for r in res["rows"]]
        differing += sum(a != b for g, w in zip(got, want) for a, b in zip(g, w))
    assert differing == 0  # float order of the bigger batch changed no greedy token on this model


def test_a_closed_client_is_cancelled_and_frees_its_slot(served):
    """A client that disconnects while its request waits in the queue is dropped: it never reaches the engine."""
    port, _, run, tiny, app = served
    batcher = app.state.explorer.batcher
    before, wait = len(batcher.batches), batcher.wait_s
    batcher.wait_s = 1.5  # the batcher lingers before taking a batch: the request is still queued when the tab closes
    try:
        body = json.dumps({"prompt": "0/run/checkpoints/step-00000.safetensors", "target_prompt": TARGET,
                           "layers": "1:1", "max_new_tokens": 6}).encode()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/api/describe", body=body, headers={"content-type": "application/json"})
        r = c.getresponse()
        assert r.status == 200 and r.readline().startswith(b"event: meta")  # the stream started
        assert batcher.waiting() == 1
        c.sock.shutdown(2)  # the tab closes
        c.close()
        t0 = time.time()
        while batcher.waiting() and time.time() - t0 < 1.0:
            time.sleep(0.01)
        assert batcher.waiting() == 0 and time.time() - t0 < 1.0  # freed before the batcher woke up
        time.sleep(1.6)
        assert len(batcher.batches) == before  # nothing ran for it
    finally:
        batcher.wait_s = wait
    assert request(port, "GET", "/")[0] == 200


def test_on_step_streams_every_token_and_drops_cancelled_rows(tiny):
    """The engine hook the explorer streams through: every row's tokens as made; a dropped row ends where it was
    dropped and the others are unchanged."""
    from softscope.engine.patching import patch_generate_ids
    from softscope.engine.target_prompts import build

    torch.manual_seed(0)
    tp = build(tiny, TARGET, 3)
    src = torch.randn(3, 3, tiny.width)
    want = patch_generate_ids(tiny, tp.ids, tp.placeholder_positions, src, [1, 2, 3], 8, "none")
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}

    def on_step(rows, toks):
        for r, t in zip(rows, toks):
            seen[r].append(t)
        return [not (r == 1 and len(seen[1]) >= 3) for r in rows]
    got = patch_generate_ids(tiny, tp.ids, tp.placeholder_positions, src, [1, 2, 3], 8, "none", on_step=on_step)
    assert seen[0] == want[0] == got[0] and seen[2] == want[2] == got[2]
    assert got[1] == want[1][:3] == seen[1]


# ---- security ------------------------------------------------------------------------------------------------
TRAVERSALS = ["/run/0/../../etc", "/run/0/run/..%2f..%2f..%2fetc", "/run/0/%2e%2e/%2e%2e/etc", "/run/0/run%5c..%5c..",
              "/file/0/run/../../../etc/passwd", "/file//etc/passwd", "/file/0/%252e%252e/etc/passwd",
              "/run/1/", "/run/x/etc", "/api/grid?run=0/../..&checkpoint=x", "/api/grid?run=/etc&checkpoint=x",
              "/api/grid?run=0/%2e%2e/%2e%2e&checkpoint=x", "/live?prompt=0/../../etc/passwd"]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_refused(served, path):
    port = served[0]
    status, _, body = request(port, "GET", path)
    assert status in (400, 403, 404), (path, status)
    assert b"Traceback" not in body and b"root:" not in body
    assert request(port, "GET", "/")[0] == 200


def test_symlinks_out_and_absolute_prompt_paths_are_refused(served, tmp_path):
    port, root, run, _, _ = served
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "plot.png").write_bytes(b"\x89PNG secret")
    link = root / "escape"
    if not link.exists():
        os.symlink(outside, link)
    status, _, body = request(port, "GET", "/file/0/escape/plot.png")
    assert status == 403 and b"outside" in body and b"secret" not in body
    for ref in (str(run / "prompt.safetensors"), "0/../secret", "0/run/config.json"):
        status, _, body = request(port, "POST", "/api/describe", {"prompt": ref, "target_prompt": TARGET,
                                                                  "layers": "1:1"})
        assert status in (403, 422), (ref, status, body)
        assert json.loads(body)["error"]


def test_files_of_a_run_are_served_only_by_type(served):
    port = served[0]
    assert request(port, "GET", "/file/0/run/describe/heatmap_class_rate.png")[0] == 200
    assert request(port, "GET", "/file/0/run/prompt.safetensors")[0] == 404


@pytest.mark.parametrize("body,status,words", [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"prompt": "0/run/prompt.safetensors", "target_prompt": "x" * 5000 + "{prompt}"}).encode(), 413,
     "characters"),
    (json.dumps({"prompt": "0/run/prompt.safetensors", "target_prompt": TARGET, "layers": "1:1",
                "max_new_tokens": 10_000}).encode(),
     422, "max_new_tokens"),
    (json.dumps({"prompt": "0/run/prompt.safetensors", "target_prompt": TARGET,
                 "layers": ",".join(f"{i % 4}:{j % 4}" for i in range(5) for j in range(4))}).encode(), 422, "pairs"),
    (json.dumps({"prompt": "0/run/prompt.safetensors", "target_prompt": "no marker", "layers": "1:1"}).encode(), 422, "{prompt}"),
    (json.dumps({"prompt": "0/run/prompt.safetensors", "target_prompt": TARGET, "layers": "1:1", "stop": "never"}).encode(), 422,
     "stop"),
    (b"x" * 70_000, 413, "limit"),
])
def test_bad_requests_get_a_4xx_with_a_message(served, body, status, words):
    port = served[0]
    got, _, raw = request(port, "POST", "/api/describe", raw_body=body)
    assert got == status, raw
    assert words in json.loads(raw)["error"]
    assert request(port, "GET", "/")[0] == 200  # still serving


def test_a_full_queue_answers_429(tmp_path, served):
    from softscope.serve.live import Batcher, QueueFull

    b = Batcher(max_queue=1, wait_s=10)  # the worker waits 10 s before taking a batch: the queue stays full
    try:
        class J:
            pairs = [(1, 1)]
            cancelled = threading.Event()

            def emit(self, ev):
                pass
        b.submit(J())
        with pytest.raises(QueueFull, match="limit 1"):
            b.submit(J())
    finally:
        b.close()


def test_queued_jobs_are_removed_by_identity(tiny):
    """Discarding one of several queued jobs removes that one (jobs hold tensors: never compared by value)."""
    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.target_prompts import build
    from softscope.serve.live import Batcher, Job

    b = Batcher(wait_s=10)
    try:
        p = SoftPrompt(tensor=torch.zeros(3, tiny.width))
        jobs = [Job(tiny, p, build(tiny, TARGET, 3), [(1, 1)], 4, "none", "embeddings", emit=lambda ev: None)
                for _ in range(3)]
        for j in jobs:
            b.submit(j)
        b.discard(jobs[1])
        assert b._queue == [jobs[0], jobs[2]] and jobs[1].cancelled.is_set() and not jobs[0].cancelled.is_set()
    finally:
        b.close()


def test_off_loopback_every_request_needs_the_token(served):
    from softscope.serve import ServeConfig, create_app
    from softscope.serve.live import Models

    port0, root, run, tiny, _ = served
    cfg = ServeConfig(host="0.0.0.0")
    app = create_app([root], cfg, Models(preloaded={tiny.name: tiny}))
    assert cfg.token and len(cfg.token) >= 24
    with running(app) as port:
        for path in ("/", "/run/0/run", "/static/serve.js", "/live"):
            status, _, body = request(port, "GET", path)
            assert status == 401 and "token" in json.loads(body)["error"], path
            status, _, body = request(port, "GET", path, headers={"authorization": "Bearer wrong-token-123"})
            assert status == 403 and "wrong" in json.loads(body)["error"]
        status, _, body = request(port, "POST", "/api/describe", {"prompt": "0/run/prompt.safetensors"})
        assert status == 401
        status, headers, _ = request(port, "GET", f"/?token={cfg.token}")
        assert status == 200 and "softscope_token" in headers.get("set-cookie", "")
        assert request(port, "GET", "/run/0/run", headers={"cookie": f"softscope_token={cfg.token}"})[0] == 200
        assert request(port, "GET", "/", headers={"authorization": f"Bearer {cfg.token}"})[0] == 200
        assert request(port, "GET", "/?token=nope")[0] == 403


def test_another_sites_page_cannot_post(served):
    """A page elsewhere can make the browser POST (no token on loopback): its Origin, or a content type it may send
    without a preflight, is refused."""
    port = served[0]
    body = {"prompt": "0/run/prompt.safetensors", "target_prompt": TARGET, "layers": "1:1"}
    status, _, raw = request(port, "POST", "/api/describe", body, headers={"origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in json.loads(raw)["error"]
    status, _, raw = request(port, "POST", "/api/describe", body, headers={"content-type": "text/plain"})
    assert status == 415 and "application/json" in json.loads(raw)["error"]
    status, _, raw = request(port, "POST", "/api/prompt", raw_body=b"x", headers={"content-type": "text/plain"})
    assert status == 415
    # the explorer's own page (same origin) is served
    status, _, raw = request(port, "POST", "/api/describe", body, headers={"origin": f"http://127.0.0.1:{port}"})
    assert status == 200


def test_without_a_token_only_loopback_host_headers_are_served(served):
    port = served[0]
    assert request(port, "GET", "/", headers={"host": "evil.example:8765"})[0] == 403
    assert request(port, "GET", "/", headers={"host": f"localhost:{port}"})[0] == 200


def test_config_and_cli(tmp_path, capsys):
    from conftest import run_cli
    from softscope.engine.errors import SoftscopeError
    from softscope.serve import ServeConfig

    assert not ServeConfig().needs_token and ServeConfig(host="0.0.0.0").needs_token
    assert ServeConfig(host="::1").needs_token is False
    with pytest.raises(SoftscopeError, match="--port"):
        ServeConfig(port=70000)
    with pytest.raises(SoftscopeError, match="max-batch-rows"):
        ServeConfig(max_pairs=100, max_batch_rows=8)
    code, _, err = run_cli(["serve", str(tmp_path / "missing")], capsys)
    assert code == 2 and "does not exist" in err


def test_other_kinds_show_the_reports_sections(served):
    """A waywardness run (fields the explorer never saw, a torn metrics file): the report's section and numbers."""
    from softscope.engine.runs import write_json

    port, root, _, _, _ = served
    w = root / "wayward-run"
    w.mkdir(exist_ok=True)
    write_json(w / "config.json", {"command": "wayward", "config": {"model": "m"}})
    write_json(w / "wayward_summary.json", {"model": "m", "new_field": {"x": 1},  # an undeclared key is ignored
                                            "per_target": [{"target": "a", "best_gamma": 0.0, "best_f1": 0.2},
                                                           {"target": "b", "best_gamma": 0.01, "best_f1": 0.95}]})
    (w / "metrics.jsonl").write_text('{"step": 1, "event": "train", "loss": 2.0}\n{"step": 2, "ev')
    status, _, body = request(port, "GET", "/run/0/wayward-run")
    page = body.decode()
    assert status == 200 and '<section id="wayward" class="report">' in page and "0.950" in page
    assert "<td>wayward</td>" in request(port, "GET", "/")[2].decode()


def test_the_cli_starts_the_server_and_prints_its_url(served):
    import re
    import subprocess
    import sys

    _, root, _, _, _ = served
    proc = subprocess.Popen([sys.executable, "-m", "softscope.cli", "serve", str(root), "--port", "0", "--token",
                             "a-token-for-tests"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=a-token-for-tests", line)
        assert m, line
        assert "token" in proc.stdout.readline()
        port = int(m.group(1))
        assert request(port, "GET", "/")[0] == 401
        status, _, body = request(port, "GET", "/?token=a-token-for-tests")
        assert status == 200 and b'<table id="runs"' in body
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_pool_target_prompt_uses_describes_seeded_demonstrations(served):
    from softscope.engine.target_prompts import build

    port, _, run, tiny, _ = served
    evs = live(port, "0/run/checkpoints/step-00002.safetensors", target_prompt="plain", seed=1, demos=2)
    assert evs[0][1]["target_prompt"] == build(tiny, "plain", 3, seed=1, k=2).text
    assert len(evs[-1][1]["rows"]) == 3


def test_an_uploaded_prompt_file_is_described_like_the_same_file_on_disk(served, tmp_path):
    import pickle

    port, _, run, _, _ = served
    ck = "checkpoints/step-00004.safetensors"
    status, _, body = request(port, "POST", "/api/prompt?name=mine.safetensors", raw_body=(run / ck).read_bytes(),
                              headers={"content-type": "application/octet-stream"})
    up = json.loads(body)
    assert status == 200 and up["ref"].startswith("upload:") and up["n_tokens"] == 3 and up["label"].endswith("mine.safetensors")
    mine = live(port, up["ref"])[-1][1]["rows"]
    assert [r["ids"] for r in mine] == [r["ids"] for r in live(port, f"0/run/{ck}")[-1][1]["rows"]]
    # what is not a safetensors prompt is refused before anything reads it as anything else
    for data, code in ((pickle.dumps({"prompt": [1.0, 2.0]}), 422), (b"\x00" * 64, 422), (b"", 400),
                       (b"x" * (4 * 1024 * 1024 + 1), 413)):
        status, _, body = request(port, "POST", "/api/prompt", raw_body=data,
                                  headers={"content-type": "application/octet-stream"})
        assert status == code and json.loads(body)["error"], (status, body[:200])
    status, _, body = request(port, "POST", "/api/describe", {"prompt": "upload:0000000000000000",
                                                             "target_prompt": TARGET, "layers": "1:1"})
    assert status == 404 and "upload it again" in json.loads(body)["error"]


def test_the_command_a_live_answer_shows_writes_the_same_descriptions(served, tmp_path, monkeypatch, capsys):
    """The live page shows the `softscope describe` command of each answer; run it, and its descriptions.jsonl
    holds the streamed texts."""
    import shlex

    from conftest import run_cli
    from softscope.engine.runs import read_jsonl

    port, _, run, tiny, _ = served
    evs = live(port, "0/run/checkpoints/step-00002.safetensors")
    command = evs[0][1]["command"]
    assert command.startswith(f"softscope describe {run / 'checkpoints' / 'step-00002.safetensors'} --target-prompt")
    monkeypatch.setattr("softscope.methods.describe.sweep.load_model", lambda *a, **k: tiny)
    code, out, err = run_cli(shlex.split(command)[1:] + ["--out", str(tmp_path / "d"), "--references", REFS[0]],
                             capsys)
    assert code == 0, err
    rows = read_jsonl(tmp_path / "d" / "descriptions.jsonl")
    assert [(r["source_layer"], r["target_layer"], r["text"], r["cut"]) for r in rows] == \
        [(r["source_layer"], r["target_layer"], r["text"], r["cut"]) for r in evs[-1][1]["rows"]]


def test_a_request_cancelled_mid_batch_leaves_it_and_the_others_are_unchanged(served):
    """Two requests in one engine batch; one client goes away after two tokens: its rows leave the batch (no done
    event for it), the other's rows still equal describe's."""
    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.target_prompts import build
    from softscope.serve.live import Batcher, Job

    _, _, run, tiny, _ = served
    prompt = SoftPrompt.load(run / "checkpoints" / "step-00004.safetensors")
    b = Batcher(wait_s=0.3)
    got: dict[str, list] = {"a": [], "b": []}
    done = threading.Event()

    def sink(name):
        def emit(ev):
            got[name].append(ev)
            if name == "a" and sum(e["event"] == "tokens" for e in got["a"]) == 2:
                jobs["a"].cancel()  # the tab closes mid-generation
            if name == "b" and ev["event"] != "tokens":
                done.set()
        return emit
    jobs = {n: Job(tiny, prompt, build(tiny, TARGET, 3), PAIRS, 6, "none", "embeddings", emit=sink(n)) for n in "ab"}
    try:
        for n in "ab":
            b.submit(jobs[n])
        assert done.wait(30)
    finally:
        b.close()
    assert b.batches[-1]["requests"] == 2 and b.batches[-1]["cancelled"] == 1
    assert [e["event"] for e in got["a"]] == ["tokens", "tokens"]  # nothing after the cancel, no done
    assert got["b"][-1]["event"] == "done" and got["b"][-1]["ids"] == _describe_ids(tiny, prompt)
    assert sum(e["event"] == "tokens" for e in got["b"]) == 6


def test_a_request_whose_rows_all_ended_is_answered_at_once(served):
    """A 3-token and a 6-token request share a batch: the short one is answered after its third token, before the
    long one's fourth, and leaves the batch; both equal describe's rows."""
    from softscope.engine.prompts import SoftPrompt
    from softscope.engine.target_prompts import build
    from softscope.serve.live import Batcher, Job

    _, _, run, tiny, _ = served
    prompt = SoftPrompt.load(run / "checkpoints" / "step-00004.safetensors")
    b = Batcher(wait_s=0.3)
    log: list[tuple[str, str]] = []
    answers: dict[str, dict] = {}
    finished = threading.Event()

    def sink(name):
        def emit(ev):
            log.append((name, ev["event"]))
            if ev["event"] == "done":
                answers[name] = ev
                if name == "long":
                    finished.set()
        return emit
    short = Job(tiny, prompt, build(tiny, TARGET, 3), PAIRS, 3, "none", "embeddings", emit=sink("short"))
    long = Job(tiny, prompt, build(tiny, TARGET, 3), PAIRS, 6, "none", "embeddings", emit=sink("long"))
    try:
        b.submit(short)
        b.submit(long)
        assert finished.wait(30)
    finally:
        b.close()
    assert b.batches[-1]["requests"] == 2
    assert log.index(("short", "done")) < [i for i, e in enumerate(log) if e == ("long", "tokens")][3]
    want = _describe_ids(tiny, prompt)
    assert answers["short"]["ids"] == [r[:3] for r in want] and answers["long"]["ids"] == want
