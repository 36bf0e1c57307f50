"""Server settings: one frozen pydantic config, filled from command-line flags and environment variables.

Only two settings come from the environment, and only through :meth:`Settings.from_env` (the constructor
never reads it, so ``Settings(...)`` means exactly what it says): pydantic-settings would read every field
from a CRNN_* variable in the constructor itself and cannot read a given mapping, so a small from_env does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from crnn.config import Config

# Environment variables read by Settings.from_env (flags of `crnn serve` override them).
ENV_API_KEY = "CRNN_API_KEY"
ENV_CORS_ORIGINS = "CRNN_CORS_ORIGINS"
# `crnn serve` hands its settings to every uvicorn worker process through this variable.
ENV_SETTINGS = "CRNN_SERVER_SETTINGS"
# The settings each variable fills.
ENV_FIELDS: dict[str, str] = {"api_key": ENV_API_KEY, "cors_origins": ENV_CORS_ORIGINS}

MiB = 1024 * 1024


class Settings(Config):
    """Everything a server process needs: model, batching, limits, security and logging."""

    model_config = ConfigDict(frozen=True)  # shared by the app, the engine and the batcher
    kind = "server"

    weights: str | None = None  # None: the shipped weights (see crnn.checkpoints.checkpoint.default_weights_path)
    # A shipped model by name instead of weights (crnn.checkpoints.shipped: default, real, ...); its file for the backend.
    model: str | None = None
    # Inference backend (crnn.reading.backend): torch, onnx (ONNX Runtime on an .onnx file, no torch) or auto.
    backend: Literal["torch", "onnx", "auto"] = "torch"
    host: str = "127.0.0.1"
    # The path prefix a reverse proxy serves the API under (e.g. "/ocr"), for the links of /docs and the page.
    root_path: str = ""
    port: int = Field(8000, ge=0, le=65535)  # 0: any free port
    workers: int = Field(1, ge=1)
    threads: int | None = Field(None, ge=1)  # torch intra-op threads per worker process (None: torch's default)
    # Images of different widths never share a model batch (so that no result depends on its batch): a
    # micro-batch splits into width groups, and this many groups run at once, each on `threads` threads.
    batch_workers: int = Field(1, ge=1)
    # Batching: images of concurrent requests are merged into model batches of at most max_batch,
    # waiting at most max_wait_ms for more to arrive. max_batch=1 turns batching off.
    max_batch: int = Field(32, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)
    # Back-pressure: at most max_queue images wait for the model; a request that cannot be queued,
    # or waits longer than queue_timeout_s before the model reads it, gets 503 + Retry-After.
    max_queue: int = Field(512, ge=1)
    queue_timeout_s: float = Field(10.0, gt=0)
    retry_after_s: int = Field(1, ge=0)
    # Request limits.
    max_body_bytes: int = Field(16 * MiB, ge=1)
    # Uploads: a request's whole body must arrive within body_timeout_s of its first read (else 408), so a
    # stalled or trickling client cannot hold a connection for ever; 30 s moves the largest body (16 MiB) at
    # 4.5 Mbit/s and a typical request (a few word crops, < 100 KB) on any link. At most max_uploads requests
    # per process read their bodies at once; more get 503 + Retry-After at once (see docs/server.md).
    body_timeout_s: float = Field(30.0, gt=0)
    max_uploads: int = Field(128, ge=1)
    max_images: int = Field(64, ge=1)
    # Largest image, from its header. A word crop is read 32 px high and at most 1,024 px wide, so 4 M pixels
    # (a 4000x1000 or 2000x2000 crop) is already far more than the model uses, and decoding it takes at most
    # ~32 MB (16-bit RGBA) and ~0.3 s; 16 M pixels, the old default, took 1.3 s and ~0.5 GB for one 16-bit PNG.
    max_pixels: int = Field(4_000_000, ge=1)
    # Decoding is bounded like the model queue: decode_workers images decode at once, and the decoded pixels
    # in flight (from the headers) stay within max_decode_pixels (memory: ~8 bytes a pixel at worst, so 16 M
    # pixels is ~130 MB); a request waits for both within queue_timeout_s, then gets 503 + Retry-After.
    decode_workers: int = Field(2, ge=1)
    max_decode_pixels: int = Field(16_000_000, ge=1)
    max_lexicon_words: int = Field(10_000, ge=1)
    # Per-request memory budget of lexicons: the words of a request's lexicons in all (the request-wide one and every
    # image's). A parsed and built 8-letter word costs ~210 bytes (docs/server.md), so 640,000 words (every image of a
    # 64-image request with a 10,000-word list) is ~135 MB; more is refused with 413 lexicon_too_large.
    max_request_lexicon_words: int = Field(640_000, ge=1)
    # Back-pressure on heavy requests (a JSON body over 64 KiB, or one without a length): at most heavy_requests of
    # them are parsed and have their lexicons built at once per process, off the event loop; a request whose lexicons
    # hold over max_lexicon_words words keeps its slot until answered. Others wait for a slot, before their body is
    # read, within queue_timeout_s, then get 503 + Retry-After. So heavy requests hold at most heavy_requests x
    # (max_body_bytes + the lexicon budget) at once.
    heavy_requests: int = Field(2, ge=1)
    max_beam_width: int = Field(100, ge=1)
    # POST /v1/read (whole photos): most photos per request, and the largest photo, from its header. A phone photo is
    # 12-50 M pixels; 40 M is the library's own limit (crnn.io.preprocess), ~120 MB decoded (RGB), and photos are read
    # one at a time per worker process, so this bounds the route's memory (docs/server.md, "Photos").
    max_photos: int = Field(4, ge=1)
    max_photo_pixels: int = Field(40_000_000, ge=1)
    # Security.
    api_key: str | None = Field(None, repr=False)
    cors_origins: tuple[str, ...] = ()
    # Lifecycle and logs.
    graceful_timeout_s: int = Field(30, ge=0)
    log_level: str = "info"
    access_log: bool = True

    @field_validator("api_key")
    @classmethod
    def _empty_key_is_no_key(cls, v: str | None) -> str | None:
        # An empty key would let every request through while looking configured.
        return v or None

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str | None) -> str | None:
        from crnn.checkpoints.shipped import shipped_model

        if v is not None:
            shipped_model(v)  # UnknownModelError (a ValueError) naming the shipped models
        return v

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: Any) -> Any:
        return parse_origins(v) if isinstance(v, str) else v  # as CRNN_CORS_ORIGINS writes them

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Settings:
        # Otherwise a request of max_images could never be queued, and 503s would repeat forever.
        if self.max_queue < self.max_images:
            raise ValueError(f"max_queue ({self.max_queue}) must be >= max_images ({self.max_images})")
        return self

    @model_validator(mode="after")
    def _one_model_choice(self) -> Settings:
        from crnn.checkpoints.shipped import check_model_choice

        check_model_choice(self.model, self.weights)  # ModelChoiceError, a ValueError
        return self

    @property
    def weights_path(self) -> Path:
        """The checkpoint file this server loads."""
        return self.model_source()[1]

    def model_source(self) -> tuple[str, Path]:
        """The backend that runs the model and the file it loads (raises BackendError when it cannot, and
        ModelNotShippedError when the named model's file is not in this install)."""
        from crnn.reading.backend import resolve_backend
        from crnn.checkpoints.header import default_weights_path

        backend, weights = resolve_backend(self.backend, self.weights, model=self.model)
        return backend, Path(weights) if weights else default_weights_path()

    def shipped_name(self) -> str | None:
        """The shipped model's name this server serves: ``model``, or "default" when no weights are given (neither
        here nor in $CRNN_WEIGHTS); None for other weights."""
        from crnn.checkpoints.shipped import DEFAULT_MODEL

        if self.model is not None:
            return self.model
        return DEFAULT_MODEL if self.weights is None and not os.environ.get("CRNN_WEIGHTS") else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then CRNN_API_KEY and CRNN_CORS_ORIGINS (comma-separated), then ``overrides`` not None."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {name: env[var] for name, var in ENV_FIELDS.items() if env.get(var)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_json(self) -> str:
        """Serialise for a worker process (the API key included: it stays in this process tree's env)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Inverse of :meth:`to_json`; unknown keys and bad values raise ConfigError."""
        return cls.from_dict(json.loads(text))


def parse_origins(text: str) -> tuple[str, ...]:
    """CORS origins from a comma- or space-separated list ('*' allows any origin)."""
    return tuple(o for o in (part.strip() for part in text.replace(",", " ").split()) if o)
