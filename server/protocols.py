"""uvicorn's HTTP protocols with one change: a request its parser refuses (a Content-Length of ``-5`` or
``1e30``, a malformed request line) is answered in the API's JSON error format, not plain text.

Such a request never reaches the app, so only the protocol can answer it. `crnn serve` passes these
classes to uvicorn (httptools when installed, as uvicorn's ``auto`` picks, else h11).
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def json_400(msg: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A complete HTTP/1.1 400 response whose body is the API's JSON error (code ``bad_request``)."""
    body = json.dumps({"error": {"code": "bad_request", "message": msg}, "request_id": None}).encode()
    head = [b"HTTP/1.1 400 Bad Request\r\n"]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head += [b"content-type: application/json\r\n", b"content-length: " + str(len(body)).encode() + b"\r\n",
             b"connection: close\r\n", b"\r\n"]
    return b"".join(head) + body


def _send_json_400(self: Any, msg: str) -> None:
    self.transport.write(json_400(msg, self.server_state.default_headers))
    self.transport.close()


class JSONH11Protocol(H11Protocol):
    """h11, with JSON 400s for requests the parser refuses."""

    send_400_response = _send_json_400  # type: ignore[assignment]


if HttpToolsProtocol is not None:
    class JSONHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        """httptools, with JSON 400s for requests the parser refuses."""

        send_400_response = _send_json_400  # type: ignore[assignment]


def protocol_name() -> str:
    """The import string of the protocol class `crnn serve` gives uvicorn."""
    return "crnn_server.protocols:" + ("JSONHttpToolsProtocol" if HttpToolsProtocol is not None else "JSONH11Protocol")
