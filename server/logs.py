"""Structured logs: every record, access logs included, as one JSON object per line."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

ACCESS_LOGGER = "crnn.server.access"

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is logged as a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, message, then its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_config(level: str = "info") -> dict[str, Any]:
    """A logging.config dict for uvicorn: JSON lines, access logs on stdout, the rest on stderr."""
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "crnn_server.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
            "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": lvl, "propagate": False},
            "uvicorn.error": {"level": lvl},
            # uvicorn's own access log is off: ours carries the request id, route and timings.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "crnn.server": {"handlers": ["stderr"], "level": lvl, "propagate": False},
            ACCESS_LOGGER: {"handlers": ["stdout"], "level": "INFO", "propagate": False},
            # It warns about every malformed multipart body, which the client already gets as a 400.
            "python_multipart": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        },
    }
