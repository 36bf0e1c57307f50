"""Typed API errors: each maps to one HTTP status and a stable machine-readable code."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error answered as JSON ``{"error": {"code", "message", "details"?}, "request_id"}``."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self, request_id: str | None) -> dict[str, Any]:
        """The JSON body of this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error, "request_id": request_id}


class EmptyRequest(APIError):
    """The request has no body at all."""

    status, code = 400, "empty_request"


class MalformedBody(APIError):
    """The body does not parse as the content type it claims (broken JSON or multipart)."""

    status, code = 400, "malformed_body"


class Unauthorized(APIError):
    """The API key is missing or wrong."""

    status, code = 401, "unauthorized"


class NotFound(APIError):
    """No such route."""

    status, code = 404, "not_found"


class MethodNotAllowed(APIError):
    """The route exists but not for this method."""

    status, code = 405, "method_not_allowed"


class BodyTimeout(APIError):
    """The request body did not arrive within the server's body-read timeout (a stalled or too slow upload)."""

    status, code = 408, "body_timeout"


class PayloadTooLarge(APIError):
    """The body is over the server's size limit."""

    status, code = 413, "payload_too_large"


class TooManyImages(APIError):
    """More images in one request than the server accepts."""

    status, code = 413, "too_many_images"


class LexiconTooLarge(APIError):
    """A request's lexicons hold more words in all than the server's per-request budget."""

    status, code = 413, "lexicon_too_large"


class UnsupportedMediaType(APIError):
    """The content type is neither multipart/form-data nor application/json."""

    status, code = 415, "unsupported_media_type"


class NoImages(APIError):
    """The request parsed but holds no image."""

    status, code = 422, "no_images"


class InvalidRequest(APIError):
    """The request's fields or options are invalid (unknown decoder, beam width out of range, ...)."""

    status, code = 422, "invalid_request"


class ModelNotLoaded(APIError):
    """The request names a shipped model (``model``) that this server did not load (`crnn serve --model`)."""

    status, code = 422, "model_not_loaded"


class Overloaded(APIError):
    """The queue is full or the request waited too long for the model: retry later."""

    status, code = 503, "overloaded"


class NotReady(APIError):
    """The model is not loaded (yet), or the server is shutting down."""

    status, code = 503, "not_ready"


class DetectorUnavailable(APIError):
    """POST /v1/read cannot work in this install: the text detector's optional packages (the ``detect`` extra:
    rapidocr, onnxruntime) are missing, or its model file is. Not transient, so not a 503: 501 until reinstalled."""

    status, code = 501, "detector_unavailable"


class InternalError(APIError):
    """A bug or an unexpected failure of the server, never a client's mistake."""

    status, code = 500, "internal_error"


def status_code(status: int) -> str:
    """The error code used for a bare HTTP status (e.g. one raised by Starlette itself)."""
    return {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
            408: "body_timeout", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
            503: "not_ready"}.get(status, "internal_error" if status >= 500 else "http_error")
