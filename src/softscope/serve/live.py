"""Live descriptions: requests from many tabs are batched dynamically into the one Patchscopes engine.

A request is one soft prompt, one target prompt and a few (source layer, target layer) pairs — what
`softscope describe` does for one checkpoint and one target prompt. Requests wait in a bounded queue; one worker
thread owns the model (forward hooks are per model, so only one thread may run it) and takes, in arrival order,
every queued request whose rows can share a batch with the first one (the same model, target prompt and stop
rule: the engine needs identical target ids in every row), up to a bounded number of rows and requests. It
computes each request's source states alone (as `describe` does), stacks all rows into one
`patch_generate_ids` call and streams every new token to its request as the engine makes it. A request whose
client went away is dropped from the queue, or from the running batch at the next token (its rows leave the KV
cache), so it stops costing compute; a request whose rows all ended (stop token or its own token limit) is
answered at once and leaves the batch the same way.

Alone in its batch, a request's rows are exactly the rows `describe` generates for that checkpoint and target
prompt, in the same order and batch, so the text is the same token for token; batched with other requests the
rows see the same arithmetic up to the float order of a larger matmul (the load benchmark counts differences).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..engine.errors import SoftscopeError
from ..engine.models import DEFAULT_MODEL, ModelAdapter, load_model
from ..engine.patching import patch_generate_ids, source_states, stop_rule
from ..engine.prompts import SoftPrompt
from ..engine.target_prompts import TargetPrompt


class QueueFull(Exception):
    """The queue holds max_queue requests already (answered with 429)."""


class Models:
    """Each model loaded once, by name (a dict of ready adapters may be given, e.g. a test's tiny model)."""

    def __init__(self, device: str = "auto", dtype: str = "auto", preloaded: dict[str, ModelAdapter] | None = None,
                 trust_remote_code: bool = False):
        self.device, self.dtype, self.trust_remote_code = device, dtype, trust_remote_code
        self._ready: dict[str, ModelAdapter] = dict(preloaded or {})
        self._lock = threading.Lock()

    def get(self, name: str | None) -> ModelAdapter:
        name = name or DEFAULT_MODEL
        with self._lock:
            if name not in self._ready:
                self._ready[name] = load_model(name, device=self.device, dtype=self.dtype,
                                               trust_remote_code=self.trust_remote_code)
            return self._ready[name]

    def names(self) -> list[str]:
        return sorted(self._ready)


@dataclass(eq=False)  # a job is itself: queue membership and removal go by identity, never by field values
class Job:
    """One live request: its prompt, target prompt and layer pairs; `emit(event)` receives its stream (any thread)."""

    adapter: ModelAdapter
    prompt: SoftPrompt
    target: TargetPrompt
    pairs: list[tuple[int, int]]
    max_new_tokens: int
    stop: str
    source_pass: str
    emit: Callable[[dict], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple:
        """Requests with equal keys can share one engine batch."""
        return (id(self.adapter), tuple(self.target.ids), tuple(self.target.placeholder_positions), self.stop)

    def cancel(self) -> None:
        self.cancelled.set()


class Batcher:
    """A bounded queue and one worker thread that runs queued jobs in dynamic batches."""

    def __init__(self, max_rows: int = 64, max_requests: int = 32, max_queue: int = 32, wait_s: float = 0.025):
        self.max_rows, self.max_requests, self.max_queue, self.wait_s = max_rows, max_requests, max_queue, wait_s
        self._queue: list[Job] = []
        self._cv = threading.Condition()
        self._stopped = False
        self._closing = threading.Event()
        self.batches: list[dict] = []  # one record per engine batch run (requests, rows, seconds): for the benchmark
        self._thread = threading.Thread(target=self._loop, name="softscope-batcher", daemon=True)
        self._thread.start()

    # ---- client side ------------------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if len(job.pairs) > self.max_rows:
            raise SoftscopeError(f"{len(job.pairs)} layer pairs exceed the {self.max_rows} rows of one batch")
        with self._cv:
            if self._stopped:
                raise QueueFull("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are already waiting (limit {self.max_queue}): "
                                "try again in a moment")
            self._queue.append(job)
            self._cv.notify()

    def discard(self, job: Job) -> None:
        """Cancel a job: out of the queue if it waits there, out of the batch at its next token if it runs."""
        job.cancel()
        with self._cv:
            if job in self._queue:
                self._queue.remove(job)

    def waiting(self) -> int:
        with self._cv:
            return len(self._queue)

    def close(self) -> None:
        """Refuse new jobs, tell waiting ones, and let the worker finish its batch (if any) and stop."""
        self._closing.set()
        with self._cv:
            self._stopped = True
            for j in self._queue:
                j.emit({"event": "error", "error": "the server is shutting down"})
            self._queue.clear()
            self._cv.notify_all()
        self._thread.join(timeout=5)

    # ---- worker side -----------------------------------------------------------------------------------------
    def _take(self) -> list[Job]:
        """The first waiting job and every later one that can share its batch, within the row and request bounds."""
        head = self._queue[0]
        batch, rows = [], 0
        for j in list(self._queue):
            if j.key == head.key and rows + len(j.pairs) <= self.max_rows and len(batch) < self.max_requests:
                batch.append(j)
                rows += len(j.pairs)
        for j in batch:
            self._queue.remove(j)
        return batch

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
            if self._closing.wait(self.wait_s):  # requests sent together arrive a few ms apart: let them join
                return
            with self._cv:
                if not self._queue:
                    continue
                batch = self._take()
            batch = [j for j in batch if not j.cancelled.is_set()]
            if not batch:
                continue
            try:
                self._run(batch)
            except Exception as e:  # one bad batch must not stop the server: its requests get the message
                if not isinstance(e, SoftscopeError):  # a bug: its traceback goes to the server's log
                    traceback.print_exception(e, file=sys.stderr)
                msg = str(e) if isinstance(e, SoftscopeError) else f"{type(e).__name__}: {e}"
                for j in batch:
                    j.emit({"event": "error", "error": msg})

    def _run(self, batch: list[Job]) -> None:
        t0 = time.monotonic()
        head = batch[0]
        adapter = head.adapter
        sources, layers, owner = [], [], []  # one entry per row
        for j in batch:  # each prompt's source pass alone, exactly as describe_prompt does it
            src = sorted({s for s, _ in j.pairs})
            S = source_states(adapter, j.prompt.tensor, src, j.source_pass, j.prompt.placement)
            at = {l: i for i, l in enumerate(src)}
            for k, (s, t) in enumerate(j.pairs):
                sources.append(S[at[s]])
                layers.append(t)
                owner.append((j, k))
        eos, keep = stop_rule(adapter, head.stop)
        rows_of = {id(j): [r for r, (o, _) in enumerate(owner) if o is j] for j in batch}
        made: list[list[int]] = [[] for _ in owner]  # each row's tokens so far, cut as describe cuts them
        ended = [False] * len(owner)  # stop token or the request's token limit reached: nothing more for this row
        answered: set[int] = set()  # jobs whose every row ended: answered at once, their rows leave the batch
        step = [0]
        batch_info = {"batch_requests": len(batch), "batch_rows": len(owner)}

        def answer(j: Job) -> None:
            answered.add(id(j))
            j.emit({"event": "done", "ids": [made[r] for r in rows_of[id(j)]], **batch_info,
                    "seconds": time.monotonic() - t0})

        def on_step(rows: list[int], tokens: list[int]) -> list[bool]:
            per: dict[int, tuple[Job, dict]] = {}
            for r, tok in zip(rows, tokens):
                j, k = owner[r]
                if ended[r] or j.cancelled.is_set():
                    continue
                ended[r] = tok == eos or step[0] + 1 >= j.max_new_tokens
                if tok != eos or keep:
                    made[r].append(tok)
                    per.setdefault(id(j), (j, {}))[1][k] = tok
            for j, toks in per.values():
                j.emit({"event": "tokens", "step": step[0], "tokens": toks})
            for j in batch:
                if id(j) not in answered and not j.cancelled.is_set() and all(ended[r] for r in rows_of[id(j)]):
                    answer(j)
            step[0] += 1
            return [not owner[r][0].cancelled.is_set() and id(owner[r][0]) not in answered for r in rows]

        patch_generate_ids(adapter, head.target.ids, head.target.placeholder_positions, torch.stack(sources), layers,
                           max_new_tokens=max(j.max_new_tokens for j in batch), stop=head.stop,
                           batch_size=len(owner), on_step=on_step)
        for j in batch:  # the engine ended first (every row stopped): answer whoever is left
            if id(j) not in answered and not j.cancelled.is_set():
                answer(j)
        self.batches.append({"requests": len(batch), "rows": len(owner), "seconds": time.monotonic() - t0,
                             "cancelled": sum(j.cancelled.is_set() for j in batch)})
        del self.batches[:-1000]


def decode(adapter: ModelAdapter, ids: list[int]) -> str:
    """A row's text as describe writes it (special tokens dropped)."""
    return adapter.tokenizer.decode(ids, skip_special_tokens=True)
