"""`softscope serve`: the live explorer, a Starlette app run by uvicorn.

Routes: `/` runs list · `/run/<ref>` one run (training curves, nearest tokens, InSPEcT heatmap, the report's
other sections) · `/live` live describe · `/api/grid` one checkpoint's layer grid · `/api/describe` a live
description as server-sent events · `/api/prompt` upload a prompt file · `/file/<ref>` a PNG or JSON a run wrote
· `/static/*` the page script and style.

Security model (docs/serve.md): binds 127.0.0.1 unless told otherwise; off loopback (or with --token) every request
carries the access token (query `?token=`, then a cookie, or an `Authorization: Bearer` header); without a token
the Host header must name this machine (no DNS rebinding). Only files under the given folders are read
(`paths.Roots`), tensors only from safetensors, request bodies are bounded JSON, and every refusal is a 4xx with a
one-line message. Nothing a client sends is executed or unpickled.
"""
# size: the explorer's HTTP surface: every route with its own request checks, so the security rules are read in one place.

from __future__ import annotations

import asyncio
import contextlib
import json
import hashlib
import secrets
import shlex
import shutil
import sys
import tempfile
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..engine.errors import SoftscopeError
from ..engine.patching import SOURCE_PASSES, STOPS, layer_pairs
from ..engine.projection import movement, project
from ..engine.prompts import SoftPrompt
from ..engine.readers import RunView, is_run_dir
from ..engine.target_prompts import MARKER, POOLS, build as build_target
from ..engine.training import list_checkpoints
from ..methods.describe import CUTS, CUTTERS
from . import pages
from .config import ServeConfig, is_loopback
from .live import Batcher, Job, Models, QueueFull, decode
from .paths import PathRefused, Roots

STATIC = Path(__file__).parent / "static"
COOKIE = "softscope_token"
UPLOAD = "upload:"  # the reference of an uploaded prompt file: upload:<sha256 prefix>
FILE_TYPES = {".png": "image/png", ".json": "application/json", ".jsonl": "application/json"}


class Explorer:
    """What the routes share: the given roots, the settings, the models (loaded once), the batcher and the prompt
    files uploaded in this session (kept in a private temporary folder, named by content hash)."""

    def __init__(self, roots: Roots, cfg: ServeConfig, models: Models):
        self.roots, self.cfg, self.models = roots, cfg, models
        self.batcher = Batcher(cfg.max_batch_rows, cfg.max_batch_requests, cfg.max_queue, cfg.batch_wait_ms / 1000)
        self.uploads: dict[str, Path] = {}
        self.upload_dir = Path(tempfile.mkdtemp(prefix="softscope-serve-uploads-"))

    def close(self) -> None:
        self.batcher.close()
        shutil.rmtree(self.upload_dir, ignore_errors=True)

    def limits(self) -> dict:
        c = self.cfg
        return {"max_pairs": c.max_pairs, "max_new_tokens": c.max_new_tokens, "max_text": c.max_text,
                "max_queue": c.max_queue, "max_batch_rows": c.max_batch_rows}

    def resolve(self, request: Request, ref: str) -> Path:
        if isinstance(ref, str) and ref.startswith(UPLOAD):
            if ref[len(UPLOAD):] not in self.uploads:
                raise HTTPException(404, f"no uploaded prompt {ref!r} in this session: upload it again")
            return self.uploads[ref[len(UPLOAD):]]
        raw = request.scope.get("raw_path", b"").decode("latin-1")
        try:
            return self.roots.resolve(ref, raw)
        except PathRefused as e:
            raise HTTPException(403, f"path refused: {e}") from None
        except FileNotFoundError as e:
            raise HTTPException(404, str(e)) from None

    def model_for(self, prompt: SoftPrompt):
        adapter = self.models.get(self.cfg.model or prompt.model or None)
        prompt.check_width(adapter.width, adapter.name)
        return adapter


# ---- access token (pure ASGI, so streaming responses pass through untouched) ----------------------------------
class TokenGate:
    """Refuse every request without the access token (when one is required) or, without one, from a foreign Host;
    refuse a POST another site's page sends (an Origin other than this server: the browser would send it)."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        if scope["method"] != "GET" and origin is not None and urlsplit(origin).netloc != headers.get("host"):
            return await _refuse(scope, receive, send, 403, f"cross-origin request from {origin} refused")
        if self.token is None:
            host = _host_name(headers.get("host", ""))
            if host and not is_loopback(host):
                return await _refuse(scope, receive, send, 403, f"Host {host!r} is not this machine: open the "
                                     "explorer at 127.0.0.1 or start it with --host and use its token")
            return await self.app(scope, receive, send)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (query.get("token") or [None])[0]
        from_query = given is not None
        if given is None and headers.get("authorization", "").lower().startswith("bearer "):
            given = headers["authorization"][7:].strip()
        if given is None and "cookie" in headers:
            c = SimpleCookie()
            try:
                c.load(headers["cookie"])
            except CookieError:
                pass
            given = c[COOKIE].value if COOKIE in c else None
        if given is None:
            return await _refuse(scope, receive, send, 401, "this explorer needs its access token: open the URL it "
                                 "printed at start (…?token=…) or send 'Authorization: Bearer <token>'")
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return await _refuse(scope, receive, send, 403, "wrong access token")
        if not from_query:
            return await self.app(scope, receive, send)

        async def send_with_cookie(message):  # the URL's token becomes a cookie, so links work without it
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode())]
            await send(message)
        return await self.app(scope, receive, send_with_cookie)


def _host_name(host: str) -> str:
    """The name in a Host header, without its port ("[::1]:8765" → "[::1]", "localhost:8765" → "localhost")."""
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


async def _refuse(scope, receive, send, status: int, message: str) -> None:
    await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


# ---- helpers ---------------------------------------------------------------------------------------------------
def _explorer(request: Request) -> Explorer:
    return request.app.state.explorer


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


async def http_error(request: Request, exc: HTTPException) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return HTMLResponse(pages.page(f"error {exc.status_code}", pages.error_box(str(exc.detail))),
                        status_code=exc.status_code)


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug: one line to the client (no traceback), the traceback to the server's stderr."""
    import traceback

    traceback.print_exception(exc, file=sys.stderr)
    msg = f"internal error ({type(exc).__name__}); the server log has the details"
    return JSONResponse({"error": msg}, status_code=500) if _wants_json(request) else PlainTextResponse(msg, 500)


async def json_body(request: Request, limit: int) -> dict:
    """The request's JSON object, refusing oversized, malformed and non-object bodies with a 4xx message."""
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > limit):
        raise HTTPException(413, f"request body over the {limit}-byte limit")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body over the {limit}-byte limit")
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HTTPException(400, f"malformed JSON: {getattr(e, 'msg', str(e))}") from None
    if not isinstance(obj, dict):
        raise HTTPException(400, f"the body must be a JSON object, not a {type(obj).__name__}")
    return obj


def _content_type(request: Request, want: str) -> None:
    """Refuse other content types (415): neither is one a page on another site may send without asking first."""
    got = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if got != want:
        raise HTTPException(415, f"send the body as {want} (got {got or 'no content type'})")


def _int(body: dict, key: str, default: int, lo: int, hi: int) -> int:
    v = body.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise HTTPException(422, f"{key} must be an integer")
    if not lo <= v <= hi:
        raise HTTPException(422, f"{key} {v} is outside {lo}..{hi} (this server's limit)")
    return v


def _choice(body: dict, key: str, default: str, choices: tuple) -> str:
    v = body.get(key, default)
    if v not in choices:
        raise HTTPException(422, f"{key} {v!r}: use {', '.join(choices)}")
    return v


def load_prompt(path: Path) -> SoftPrompt:
    """A prompt from a safetensors file, a run folder (its final prompt) or a PEFT folder; nothing else is read."""
    if path.is_file() and path.suffix != ".safetensors":
        raise HTTPException(422, f"{path.name} is not a .safetensors prompt file")
    if path.is_dir() and not ((path / "prompt.safetensors").is_file() or (path / "adapter_model.safetensors").is_file()):
        files = list_checkpoints(path)
        if not files:
            raise HTTPException(422, f"{path.name} holds no prompt.safetensors, checkpoints or PEFT adapter")
        path = files[-1]
    try:
        return SoftPrompt.load(path)
    except SoftscopeError as e:
        raise HTTPException(422, str(e)) from None


# ---- pages -----------------------------------------------------------------------------------------------------
async def runs_route(request: Request) -> Response:
    return HTMLResponse(await run_in_threadpool(pages.runs_page, _explorer(request).roots))


async def run_route(request: Request) -> Response:
    ex = _explorer(request)
    ref = request.path_params["ref"].rstrip("/")
    path = ex.resolve(request, ref)
    if not path.is_dir() or not is_run_dir(path):
        raise HTTPException(404, f"{ref} is not a run folder")
    checkpoint = request.query_params.get("checkpoint")

    def build() -> str:
        return pages.run_page(ex.roots, path, ref, _projection(ex, path, checkpoint), checkpoint)
    return HTMLResponse(await run_in_threadpool(build))


def _projection(ex: Explorer, run: Path, checkpoint: str | None) -> dict | None:
    """Nearest tokens and movement from init of a training run's chosen checkpoint (default: its final prompt)."""
    if not (run / "metrics.jsonl").exists() and not (run / "train_summary.json").exists():
        return None
    files = list_checkpoints(run)
    if checkpoint is not None:
        if not checkpoint.isdigit():
            return {"error": f"checkpoint {checkpoint!r}: give a step number"}
        files = [f for f in files if f.name == f"step-{int(checkpoint):05d}.safetensors"]
        if not files:
            return {"error": f"no checkpoint at step {checkpoint}"}
        path = files[0]
    else:
        path = run / "prompt.safetensors" if (run / "prompt.safetensors").is_file() else (files[-1] if files else None)
    if path is None:
        return None
    try:
        prompt = SoftPrompt.load(path)
        adapter = ex.model_for(prompt)
        p = project(adapter, prompt.tensor, "l2", top_k=3)
        return {"label": str(path.relative_to(run)), "model": adapter.name, "top": p.top,
                "movement": movement(prompt, path)}
    except SoftscopeError as e:
        return {"error": f"no projection: {e}"}


async def live_route(request: Request) -> Response:
    ex = _explorer(request)
    chosen = request.query_params.get("prompt")
    if chosen is not None:
        ex.resolve(request, chosen)
    return HTMLResponse(await run_in_threadpool(pages.live_page, ex.roots, chosen, ex.limits()))


async def file_route(request: Request) -> Response:
    ex = _explorer(request)
    path = ex.resolve(request, request.path_params["ref"])
    kind = FILE_TYPES.get(path.suffix.lower())
    if not path.is_file() or kind is None:
        raise HTTPException(404, f"only {', '.join(FILE_TYPES)} files of a run are served")
    return FileResponse(path, media_type=kind)


async def grid_route(request: Request) -> Response:
    ex = _explorer(request)
    q = request.query_params
    if not q.get("run") or not q.get("checkpoint"):
        raise HTTPException(400, "give run, checkpoint and score")
    path = ex.resolve(request, q["run"])
    try:
        return JSONResponse(await run_in_threadpool(pages.grid_json, RunView(path), q["checkpoint"],
                                                    q.get("score", "similarity")))
    except FileNotFoundError as e:
        raise HTTPException(404, str(e)) from None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


async def upload_route(request: Request) -> Response:
    """A prompt file sent as the raw body: kept if safetensors can read it as a softscope or PEFT prompt, else 4xx.

    Only the safetensors parser ever reads the bytes (no pickle); the file is named by its hash, never by the
    client, in the explorer's private temporary folder."""
    ex = _explorer(request)
    _content_type(request, "application/octet-stream")
    limit = ex.cfg.max_upload
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise HTTPException(413, f"prompt file over the {limit}-byte upload limit")
    if not data:
        raise HTTPException(400, "send the .safetensors prompt file as the request body")
    key = hashlib.sha256(data).hexdigest()[:16]
    if key not in ex.uploads and len(ex.uploads) >= ex.cfg.max_uploads:
        raise HTTPException(429, f"{len(ex.uploads)} prompt files were uploaded already (limit {ex.cfg.max_uploads})")
    path = ex.upload_dir / f"{key}.safetensors"
    path.write_bytes(data)
    try:
        prompt = await run_in_threadpool(SoftPrompt.load, path)
    except SoftscopeError:
        path.unlink(missing_ok=True)
        raise HTTPException(422, "not a safetensors prompt file (softscope prompt or PEFT adapter_model.safetensors); "
                                 "pickled files (.bin, .pt) are refused") from None
    ex.uploads[key] = path
    name = request.query_params.get("name", "")[:80] or f"{key}.safetensors"
    return JSONResponse({"ref": UPLOAD + key, "label": f"uploaded: {name}", "n_tokens": prompt.n_tokens,
                         "width": prompt.width, "model": prompt.model or None})


# ---- live describe: server-sent events ---------------------------------------------------------------------------
async def describe_route(request: Request) -> Response:
    """Validate a live request, queue it, and answer with its stream (meta, tokens…, done | error)."""
    ex = _explorer(request)
    c = ex.cfg
    _content_type(request, "application/json")
    body = await json_body(request, c.max_body)
    ref = body.get("prompt")
    if not isinstance(ref, str):
        raise HTTPException(422, "prompt: give the path of a prompt file as <root>/<relative path>")
    spec = body.get("target_prompt", "plain")
    if not isinstance(spec, str) or not spec.strip():
        raise HTTPException(422, "target_prompt must be a pool name or a text with {prompt}")
    if len(spec) > c.max_text:
        raise HTTPException(413, f"target_prompt has {len(spec)} characters; the limit is {c.max_text}")
    if spec not in POOLS and MARKER not in spec:
        raise HTTPException(422, f"target_prompt: use a pool ({', '.join(POOLS)}) or a text with {MARKER}")
    layers = body.get("layers")
    if isinstance(layers, list):
        if len(layers) > c.max_pairs or not all(isinstance(p, list) and len(p) == 2 and all(
                isinstance(x, int) and not isinstance(x, bool) for x in p) for p in layers):
            raise HTTPException(422, f"layers: give up to {c.max_pairs} [source, target] integer pairs")
        layers = ",".join(f"{s}:{t}" for s, t in layers)
    if not isinstance(layers, str) or len(layers) > 4 * c.max_text:
        raise HTTPException(422, "layers: give pairs like '4:4,8:4' (or a list of [source, target])")
    max_new = _int(body, "max_new_tokens", min(24, c.max_new_tokens), 1, c.max_new_tokens)
    seed = _int(body, "seed", 0, 0, 2**31 - 1)
    demos = _int(body, "demos", 3, 1, 8)
    stop = _choice(body, "stop", "eos", STOPS)
    source_pass = _choice(body, "source_pass", "embeddings", SOURCE_PASSES)
    cut_rule = _choice(body, "cut", "softscope", CUTS)
    prompt = await run_in_threadpool(load_prompt, ex.resolve(request, ref))
    try:
        adapter = await run_in_threadpool(ex.model_for, prompt)
        pairs = layer_pairs(layers, adapter.n_layers)
        if len(pairs) > c.max_pairs:
            raise HTTPException(422, f"{len(pairs)} layer pairs; this server's limit is {c.max_pairs} per request")
        target = build_target(adapter, spec, prompt.n_tokens, seed, demos)
    except SoftscopeError as e:
        raise HTTPException(422, str(e)) from None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    job = Job(adapter, prompt, target, pairs, max_new, stop, source_pass,
              emit=lambda ev: loop.call_soon_threadsafe(queue.put_nowait, ev))
    try:
        ex.batcher.submit(job)
    except QueueFull as e:
        raise HTTPException(429, str(e)) from None
    meta = {"event": "meta", "pairs": pairs, "target_prompt": target.text, "model": adapter.name,
            "prompt": ref, "max_new_tokens": max_new, "queued": ex.batcher.waiting(),
            "command": describe_command(ex.resolve(request, ref), spec, pairs, max_new, stop, source_pass, cut_rule,
                                        seed, demos, ex.cfg.model)}
    return EventStream(ex, job, queue, meta, adapter, CUTTERS[cut_rule])


def describe_command(path: Path, spec: str, pairs, max_new: int, stop: str, source_pass: str, cut_rule: str,
                     seed: int, demos: int, model: str | None) -> str:
    """The `softscope describe` command that writes this live request's descriptions (one target prompt)."""
    q = shlex.quote
    parts = ["softscope describe", q(str(path)), "--target-prompt", q(spec), "--layers",
             ",".join(f"{s}:{t}" for s, t in pairs), "--max-new-tokens", str(max_new), "--stop", stop]
    if spec in POOLS:
        parts += ["--n-targets", "1", "--seed", str(seed), "--demos", str(demos)]
    if source_pass != "embeddings":
        parts += ["--source-pass", source_pass]
    if cut_rule != "softscope":
        parts += ["--cut", cut_rule]
    if model:
        parts += ["--model", q(model)]
    return " ".join(parts)


class EventStream(Response):
    """Server-sent events of one job; a client that goes away cancels the job (out of the queue or the batch)."""

    media_type = "text/event-stream"

    def __init__(self, ex: Explorer, job: Job, queue: asyncio.Queue, meta: dict, adapter, cutter):
        self.status_code, self.background = 200, None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
                            (b"x-accel-buffering", b"no")]  # no content-length: the stream ends when the job does
        self.ex, self.job, self.queue, self.meta, self.adapter, self.cutter = ex, job, queue, meta, adapter, cutter

    @staticmethod
    def _event(name: str, data: Any) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    async def __call__(self, scope, receive, send) -> None:
        gone = asyncio.Event()

        async def watch():  # the body was read already: the next message is the client leaving
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    gone.set()
                    self.ex.batcher.discard(self.job)  # at once: out of the queue, or out of the batch
                    self.queue.put_nowait({"event": "gone"})
                    return
        watcher = asyncio.create_task(watch())
        ids: dict[int, list[int]] = {k: [] for k in range(len(self.job.pairs))}
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": self._event("meta", self.meta), "more_body": True})
            while not gone.is_set():
                try:
                    ev = await asyncio.wait_for(self.queue.get(), 0.5)
                except asyncio.TimeoutError:
                    await send({"type": "http.response.body", "body": b": waiting\n\n", "more_body": True})
                    continue
                if ev["event"] == "tokens":
                    texts = {}
                    for k, tok in ev["tokens"].items():
                        ids[k].append(tok)
                        texts[k] = decode(self.adapter, ids[k])
                    chunk = self._event("tokens", {"step": ev["step"], "texts": texts})
                elif ev["event"] == "done":
                    rows = [{"source_layer": s, "target_layer": t, "ids": r, "text": decode(self.adapter, r),
                             "cut": self.cutter(decode(self.adapter, r))}
                            for (s, t), r in zip(self.job.pairs, ev["ids"])]
                    chunk = self._event("done", {"rows": rows, "batch_requests": ev["batch_requests"],
                                                 "batch_rows": ev["batch_rows"], "seconds": ev["seconds"]})
                elif ev["event"] == "gone":
                    break
                else:
                    chunk = self._event("error", {"error": ev.get("error", "failed")})
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if ev["event"] != "tokens":
                    break
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-write
            pass
        finally:
            watcher.cancel()
            self.ex.batcher.discard(self.job)  # no-op when it finished


# ---- the app ---------------------------------------------------------------------------------------------------
def create_app(sources, cfg: ServeConfig | None = None, models: Models | None = None) -> Starlette:
    """The explorer over `sources` (run folders and prompt files). cfg.token is filled in when one is needed."""
    cfg = cfg or ServeConfig()
    roots = Roots.of(sources)
    if cfg.needs_token and cfg.token is None:
        cfg.token = secrets.token_urlsafe(24)
    ex = Explorer(roots, cfg, models or Models(cfg.device, cfg.dtype, trust_remote_code=cfg.trust_remote_code))
    routes = [Route("/", runs_route), Route("/run/{ref:path}", run_route), Route("/live", live_route),
              Route("/file/{ref:path}", file_route), Route("/api/grid", grid_route),
              Route("/api/describe", describe_route, methods=["POST"]),
              Route("/api/prompt", upload_route, methods=["POST"]),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        ex.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error},
                    middleware=[Middleware(TokenGate, token=cfg.token if cfg.needs_token else None)],
                    lifespan=lifespan)
    app.state.explorer = ex
    return app


def url_of(cfg: ServeConfig, port: int | None = None) -> str:
    host = cfg.host if ":" not in cfg.host else f"[{cfg.host}]"
    return f"http://{host}:{port or cfg.port}/" + (f"?token={cfg.token}" if cfg.needs_token else "")


def serve(sources, cfg: ServeConfig, announce=print) -> None:
    """Run the explorer until interrupted; prints the URL (with the token when one is needed)."""
    import uvicorn

    app = create_app(sources, cfg)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def run():
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1] if server.servers else cfg.port
            announce(f"softscope serve: {len(app.state.explorer.roots.paths)} path(s) at {url_of(cfg, port)}")
            if cfg.needs_token:
                announce("every request needs this token (it is in the URL above); keep it private")
        await task
    asyncio.run(run())
