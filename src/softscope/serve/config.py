"""The explorer's settings: where it listens, who may ask, and how much one request and the queue may hold."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..engine.config import PromptModelOptions, option, validate
from ..engine.errors import SoftscopeError

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: only this machine can reach the server."""
    h = host.strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass
class ServeConfig(PromptModelOptions):
    """`softscope serve`: a live explorer over run folders and prompt files (one model load per model; the model
    options apply to every prompt, whose own model is the default)."""

    host: str = option("127.0.0.1", "address to bind; any non-loopback address requires the access token")
    port: int = option(8765, "TCP port (0 = any free port)", ge=0, le=65535)
    token: str | None = option(None, "access token every request must carry (default: generated and printed when the "
                                     "host is not loopback; none on loopback)")
    max_batch_rows: int = option(64, "layer-pair rows one engine batch may hold (requests are batched up to this)", ge=1)
    max_batch_requests: int = option(32, "requests one engine batch may hold (1 = serve them one at a time)", ge=1)
    batch_wait_ms: int = option(25, "how long the batcher waits for more requests to join a batch", ge=0, le=10000)
    max_queue: int = option(32, "requests waiting for the engine; more are refused with 429", ge=1)
    max_pairs: int = option(16, "layer pairs per live request", ge=1)
    max_new_tokens: int = option(64, "generated tokens per live description", ge=1)
    max_text: int = option(2000, "characters of a live target prompt", ge=1)
    max_body: int = option(64 * 1024, "bytes of a request body", ge=256)
    max_upload: int = option(4 * 1024 * 1024, "bytes of an uploaded prompt file (.safetensors only)", ge=1024)
    max_uploads: int = option(64, "uploaded prompt files kept (in a temporary folder removed at exit)", ge=0)

    def __post_init__(self) -> None:
        validate(self)
        if self.token is not None and len(self.token) < 8:
            raise SoftscopeError("--token: use at least 8 characters (or leave it out to have one generated)")
        if self.max_pairs > self.max_batch_rows:
            raise SoftscopeError(f"--max-pairs {self.max_pairs} exceeds --max-batch-rows {self.max_batch_rows}: one "
                                 "request must fit one engine batch")

    @property
    def needs_token(self) -> bool:
        """A token is required off loopback, and whenever one was given."""
        return self.token is not None or not is_loopback(self.host)
