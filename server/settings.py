"""Server settings: one frozen dataclass, filled from command-line flags and environment variables."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from crnn.errors import ConfigError

# Environment variables read by Settings.from_env (flags of `crnn serve` override them).
ENV_API_KEY = "CRNN_API_KEY"
ENV_CORS_ORIGINS = "CRNN_CORS_ORIGINS"
# `crnn serve` hands its settings to every uvicorn worker process through this variable.
ENV_SETTINGS = "CRNN_SERVER_SETTINGS"

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything a server process needs: model, batching, limits, security and logging."""

    weights: str | None = None  # None: the shipped weights (see crnn.checkpoint.default_weights_path)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int | None = None  # torch intra-op threads per worker process (None: torch's default)
    # Images of different widths never share a model batch (so that no result depends on its batch): a
    # micro-batch splits into width groups, and this many groups run at once, each on `threads` threads.
    batch_workers: int = 1
    # Batching: images of concurrent requests are merged into model batches of at most max_batch,
    # waiting at most max_wait_ms for more to arrive. max_batch=1 turns batching off.
    max_batch: int = 32
    max_wait_ms: float = 5.0
    # Back-pressure: at most max_queue images wait for the model; a request that cannot be queued,
    # or waits longer than queue_timeout_s before the model reads it, gets 503 + Retry-After.
    max_queue: int = 512
    queue_timeout_s: float = 10.0
    retry_after_s: int = 1
    # Request limits.
    max_body_bytes: int = 16 * MiB
    max_images: int = 64
    max_pixels: int = 16_000_000
    max_lexicon_words: int = 10_000
    max_beam_width: int = 100
    # Security.
    api_key: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    # Lifecycle and logs.
    graceful_timeout_s: int = 30
    log_level: str = "info"
    access_log: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.workers >= 1, "workers must be >= 1"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
            (self.batch_workers >= 1, "batch_workers must be >= 1"),
            (self.max_batch >= 1, "max_batch must be >= 1"),
            (self.max_wait_ms >= 0, "max_wait_ms must be >= 0"),
            (self.max_queue >= 1, "max_queue must be >= 1"),
            (self.queue_timeout_s > 0, "queue_timeout_s must be > 0"),
            (self.retry_after_s >= 0, "retry_after_s must be >= 0"),
            (self.max_body_bytes >= 1, "max_body_bytes must be >= 1"),
            (self.max_images >= 1, "max_images must be >= 1"),
            # Otherwise a request of max_images could never be queued, and 503s would repeat forever.
            (self.max_queue >= self.max_images, "max_queue must be >= max_images"),
            (self.max_pixels >= 1, "max_pixels must be >= 1"),
            (self.max_lexicon_words >= 1, "max_lexicon_words must be >= 1"),
            (self.max_beam_width >= 1, "max_beam_width must be >= 1"),
            (1 <= self.port <= 65535 or self.port == 0, "port must be in 0..65535"),
            (self.graceful_timeout_s >= 0, "graceful_timeout_s must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        # An empty key would let every request through while looking configured.
        if self.api_key is not None and not self.api_key:
            object.__setattr__(self, "api_key", None)

    @property
    def weights_path(self) -> Path:
        """The checkpoint file this server loads."""
        from crnn.checkpoint_header import default_weights_path

        return Path(self.weights) if self.weights else default_weights_path()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then CRNN_API_KEY and CRNN_CORS_ORIGINS (comma-separated), then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get(ENV_API_KEY):
            values["api_key"] = env[ENV_API_KEY]
        if env.get(ENV_CORS_ORIGINS):
            values["cors_origins"] = parse_origins(env[ENV_CORS_ORIGINS])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_json(self) -> str:
        """Serialise for a worker process (the API key included: it stays in this process tree's env)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Inverse of :meth:`to_json`; unknown keys are refused."""
        data = json.loads(text)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown server setting(s): {', '.join(unknown)}")
        data["cors_origins"] = tuple(data.get("cors_origins") or ())
        return cls(**data)


def parse_origins(text: str) -> tuple[str, ...]:
    """CORS origins from a comma- or space-separated list ('*' allows any origin)."""
    return tuple(o for o in (part.strip() for part in text.replace(",", " ").split()) if o)
