"""ASGI middleware: request ids, the body size limit, metrics, access logs and a last-resort 500."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crnn_server.errors import APIError, BodyTimeout, InternalError, NotReady, Overloaded, PayloadTooLarge
from crnn_server.logs import ACCESS_LOGGER
from crnn_server.metrics import Metrics

log = logging.getLogger("crnn.server")
access_log = logging.getLogger(ACCESS_LOGGER)

# A client's request id is echoed only if it is short and plain (it ends up in logs and headers).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Ids only need to be unique, not secret; os.urandom (uuid4) costs a syscall per request.
_ids = random.Random()


def new_request_id() -> str:
    """A random 128-bit request id in hex."""
    return f"{_ids.getrandbits(128):032x}"


def request_id_of(scope: Scope) -> str | None:
    """The request id the middleware gave this request."""
    return scope.get("state", {}).get("request_id")


class ObservabilityMiddleware:
    """Gives each request an id (X-Request-ID), enforces the body limit while the body streams in,
    counts and times the request, writes one JSON access log line, and turns any escaped
    exception into a typed JSON 500 so that clients never see a bare traceback page.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, access_log: bool = True,
                 body_timeout_s: float | None = None, max_uploads: int | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.body_timeout_s = body_timeout_s
        self.max_uploads = max_uploads
        self.uploads = 0  # requests of this process receiving their bodies now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        sent = {"status": 0, "bytes": 0}
        received = 0

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        length = headers.get("content-length", "")
        declared = int(length) if length.isdigit() else None

        upload = {"deadline": 0.0, "counted": False, "done": False}

        async def receive_limited() -> Message:
            nonlocal received
            if declared is not None and declared > self.max_body_bytes:
                # Refused from the header alone, before a byte of the body is read. Raised here,
                # when the route first reads, so that routing and auth have run (and label it).
                raise PayloadTooLarge(self._too_large(declared), {"limit_bytes": self.max_body_bytes})
            if upload["done"]:
                return await receive()  # the body is in: only a disconnect can come
            if not upload["deadline"]:  # the first read of this body
                if self.max_uploads is not None and self.uploads >= self.max_uploads:
                    raise Overloaded(f"{self.uploads} uploads are in progress (at most {self.max_uploads}); retry later",
                                     headers={"Retry-After": "1", "Connection": "close"})
                self.uploads += 1
                upload["counted"] = True
                upload["deadline"] = time.monotonic() + (self.body_timeout_s or float("inf"))
            remaining = upload["deadline"] - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), None if remaining == float("inf") else max(remaining, 0.0))
            except asyncio.TimeoutError:
                raise BodyTimeout(f"the request body did not arrive within {self.body_timeout_s:g} s",
                                  {"received_bytes": received}, headers={"Connection": "close"}) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                finish_upload()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                # Checked per chunk as the body arrives, so an oversized upload is cut off early
                # instead of being buffered whole (chunked bodies have no Content-Length).
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self._too_large(), {"limit_bytes": self.max_body_bytes})
            return message

        def finish_upload() -> None:
            upload["done"] = True
            if upload["counted"]:
                upload["counted"] = False
                self.uploads -= 1

        try:
            await self.app(scope, receive_limited, send_with_id)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when the SIGTERM grace period ends (e.g. a stalled
            # upload): answer a JSON 503 and close, rather than let uvicorn write a plain-text 500.
            if sent["status"]:
                raise
            error = NotReady("the server is shutting down; retry on another instance",
                             headers={"Retry-After": "1", "Connection": "close"})
            state["error_code"] = error.code
            await send_json(send_with_id, error.status, error.body(rid), error.headers)
        except ClientDisconnect:
            # The client left mid-body: nobody to answer; logged with nginx's "client closed" status.
            if not sent["status"]:
                sent["status"] = 499
        except Exception as e:
            if sent["status"]:
                log.exception("error after the response started", extra={"request_id": rid})
            else:
                error = e if isinstance(e, APIError) else InternalError("internal server error")
                if not isinstance(e, APIError):
                    log.exception("unhandled error", extra={"request_id": rid, "path": scope.get("path")})
                state["error_code"] = error.code
                await send_json(send_with_id, error.status, error.body(rid), error.headers)
        finally:
            finish_upload()
            self._record(scope, started, rid, sent, received)

    def _too_large(self, length: int | None = None) -> str:
        size = f" ({length:,} bytes)" if length is not None else ""
        return f"request body{size} is over the limit of {self.max_body_bytes:,} bytes"

    def _record(self, scope: Scope, started: float, rid: str, sent: dict[str, int], received: int) -> None:
        seconds = time.perf_counter() - started
        route = scope.get("route")
        route_path = getattr(route, "path", None) or "<unmatched>"
        status = sent["status"] or 500
        state = scope.get("state", {})
        code = state.get("error_code")
        self.metrics.observe_request(route_path, scope["method"], status, seconds, code)
        if not self.access_log:
            return
        client = scope.get("client")
        entry: dict[str, Any] = {
            "request_id": rid,
            "method": scope["method"],
            "path": scope["path"],
            "route": route_path,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "bytes_in": received,
            "bytes_out": sent["bytes"],
            "client": f"{client[0]}:{client[1]}" if client else None,
            "user_agent": Headers(scope=scope).get("user-agent"),
        }
        if code:
            entry["error_code"] = code
        if "images" in state:
            entry["images"] = state["images"]
        access_log.info("request", extra=entry)


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Send a complete JSON response through a raw ASGI ``send``."""
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
