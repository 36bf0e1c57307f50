"""The FastAPI application: routes, error handlers, middleware and the model's lifespan."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi_offline import FastAPIOffline
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from crnn import __version__
from crnn.decoding.ctc_decode import DEFAULT_DECODER
from crnn.detection.detector import TextDetector
from crnn.errors import BackendError, DecoderOptionError
from crnn.reading.text_recognizer import TextRecognizer
from crnn_server.batching import BatcherClosed, QueueFull, QueueTimeout, Slot
from crnn_server.engine import Engine
from crnn_server.errors import (
    APIError,
    DetectorUnavailable,
    InvalidRequest,
    NotReady,
    Overloaded,
    Unauthorized,
    status_code,
)
from crnn_server.metrics import CONTENT_TYPE_LATEST, Metrics
from crnn_server.middleware import ObservabilityMiddleware, request_id_of
from crnn_server.parsing import ReadJSON, RecognizeJSON, is_heavy, parse_read, parse_recognize
from crnn_server.photos import PhotoService
from crnn_server.request_types import DecodeOptions
from crnn_server.settings import Settings

log = logging.getLogger("crnn.server")

API_KEY_HEADER = "X-API-Key"


# ---- response models (for the OpenAPI schema; handlers build plain dicts for speed) ----------


class ImageResult(BaseModel):
    """A recognised image."""

    name: str
    text: str
    confidence: float = Field(description="P(text | image) under CTC, in [0, 1].")
    char_confidences: list[float] = Field(description="One value per character of text.")
    in_lexicon: bool | None = Field(
        None, description="Only when a lexicon was used: false when no lexicon word was near the reading, which is "
        "returned as read.")
    orientation: str | None = Field(
        None, description="Only with orientation=auto: how the crop's text appeared and was turned before reading: "
        "0, 90, 180, 270 (degrees clockwise) or stacked.")


class ImageFailure(BaseModel):
    """An image that could not be read (the request's other images are still read)."""

    name: str
    error: str = Field(description="Why the image was refused (corrupt, not an image, too many pixels, ...).")
    code: str = Field("invalid_image")


class RecognizeResponse(BaseModel):
    """Results in the order of the request's images."""

    model: str
    results: list[ImageResult | ImageFailure]
    elapsed_ms: float


class WordOut(BaseModel):
    """One word of a photo."""

    text: str
    confidence: float = Field(description="The mean of its characters' confidences, in [0, 1].")
    polygon: list[list[float]] = Field(description="Four [x, y] corners in photo pixels, clockwise from the top-left "
                                       "corner of the text as it reads.")
    line: int = Field(description="Index of its line in lines.")
    in_lexicon: bool | None = Field(None, description="Only when the request has a lexicon: whether the text is a "
                                    "lexicon word (false: no word placed it; the reading stands).")


class LineOut(BaseModel):
    """One text line of a photo, as the detector found it and the recognizer read it."""

    text: str
    confidence: float
    polygon: list[list[float]]
    detector_score: float
    orientation: str = Field(description="How the line's text appeared: 0, or 90/180/270 when it was turned to be read.")


class PhotoResult(BaseModel):
    """A read photo: its words and lines in reading order (empty lists when it holds no text)."""

    name: str
    width: int
    height: int
    words: list[WordOut]
    lines: list[LineOut]
    unreadable: int = Field(description="Regions found but too small or too elongated to read.")
    dropped: int = Field(description="Lines read with a mean character confidence under min_confidence.")
    timings_ms: dict[str, float] = Field(description="wait (for the photo thread), load (decode), detect, recognize.")


class ReadResponse(BaseModel):
    """Results in the order of the request's photos."""

    model: str
    detector: str
    results: list[PhotoResult | ImageFailure]
    elapsed_ms: float


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail
    request_id: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in [
        (400, "Empty or malformed body"), (401, "Missing or wrong X-API-Key"),
        (408, "The body did not arrive within the body-read timeout"),
        (413, "Body over the size limit, too many images, or too many lexicon words in all"), (415, "Neither multipart/form-data nor JSON"),
        (422, "Invalid options or fields, or no image"), (503, "Overloaded (see Retry-After) or not ready"),
    ]
}

def _request_body(files: str, options: dict[str, Any], json_schema: str) -> dict[str, Any]:
    """The OpenAPI request body of a hand-parsed route: multipart parts named ``files`` (described by ``files``), the
    decoder options both routes take, the route's own ``options``, or the JSON body of ``json_schema``."""
    properties = {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}, "description": files},
        "decoder": {"type": "string", "enum": ["greedy", "beam", "lm"], "default": DEFAULT_DECODER},
        "beam_width": {"type": "integer", "minimum": 1, "default": 10},
        **options,
    }
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": properties, "required": ["files"]}},
        "application/json": {"schema": {"$ref": f"#/components/schemas/{json_schema}"}},
    }}}


RECOGNIZE_BODY = _request_body("Word crops (PNG, JPEG, ...), one part each.", {
    "lm_weight": {"type": "number", "minimum": 0, "maximum": 10,
                  "description": "The lm decoder's language-model weight (default: the tuned one)."},
    "lexicon": {"type": "string", "description": "Allowed words, one per line (or repeat the field)."},
    "model": {"type": "string", "description": "The shipped model to read with: the server's "
              "(`crnn serve --model`), else 422 model_not_loaded (default: the server's model)."},
}, "RecognizeJSON")


READ_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    413: {"model": ErrorResponse, "description": "Body over the size limit, or more photos than --max-photos"},
    501: {"model": ErrorResponse, "description": "No text detector in this install (the detect extra is missing)"},
}

READ_BODY = _request_body("Photos (JPEG, PNG, ...), one part each.", {
    "lm_weight": {"type": "number", "minimum": 0, "maximum": 10,
                  "description": "The lm decoder's language-model weight on the lines (default: the tuned one)."},
    "lexicon": {"type": "string", "description": "Allowed words, one per line (or repeat the field): each word of "
                "a photo is decoded under them."},
    "split": {"type": "string", "enum": ["ctc", "chars"], "default": "ctc"},
    "min_confidence": {"type": "number", "minimum": 0, "maximum": 1},
}, "ReadJSON")


def _error_response(request: Request, error: APIError) -> JSONResponse:
    request.state.error_code = error.code
    return JSONResponse(error.body(request_id_of(request.scope)), status_code=error.status, headers=error.headers)


# Where the API documentation's assets (Swagger UI) are served from the installed fastapi-offline package.
DOCS_ASSETS_URL = "/docs-assets"

def create_app(settings: Settings | None = None, recognizer: TextRecognizer | None = None,
               model_name: str | None = None, freeze_heap: bool = False,
               detector: TextDetector | None = None) -> FastAPI:
    """The API app; the model is loaded at start-up (lifespan) unless ``recognizer`` is given. ``freeze_heap``: the
    process is the server's own (`crnn serve`), so its start-up objects can be frozen (see the lifespan).
    ``detector``: the text detector of POST /v1/read (default: PP-OCRv6 small, built on the first photo)."""
    settings = settings or Settings.from_env()
    metrics = Metrics()
    engine = Engine(settings, metrics, recognizer, model_name)
    photos = PhotoService(settings, metrics, engine, detector)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        if freeze_heap:
            # A full collection walks every tracked object while holding the GIL, so the event loop too: on the 2-core
            # host, the ~220,000 of a loaded server (torch, the model, the app) took 250 ms, and /healthz waited. They
            # live as long as the process: frozen, no collection walks them again (refcounting still frees them).
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            # Runs after uvicorn has stopped accepting and finished in-flight requests (SIGTERM).
            await asyncio.to_thread(photos.stop)
            await engine.stop()
            log.info("stopped")

    # Swagger UI's script, stylesheet and favicon come from the fastapi-offline package, not a CDN: an OCR
    # server often runs where there is no internet, and /docs must work there too. Its links honour the
    # root path a proxy serves the app under (uvicorn's, from `crnn serve --root-path`). The validator badge
    # would call validator.swagger.io: off.
    app = FastAPIOffline(
        title="crnn-ocr",
        version=__version__,
        summary="Scene-text recognition with a CRNN (CNN + BiLSTM + CTC): word crops, and whole photos with a text detector.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        static_url=DOCS_ASSETS_URL,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.engine = engine
    app.state.photos = photos

    api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                                  description="Required when the server runs with CRNN_API_KEY set.")

    # Dependencies are coroutines so that FastAPI runs them inline, not through a thread pool hop.
    async def require_api_key(key: str | None = Depends(api_key_header)) -> None:
        """Refuse the request unless X-API-Key matches the configured key (compared in constant time)."""
        if settings.api_key is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), settings.api_key.encode()):
            raise Unauthorized("missing or wrong X-API-Key header")

    async def require_ready() -> Engine:
        """The engine, or 503 while the model is not loaded or the server drains."""
        if not engine.ready:
            raise NotReady("the model is not loaded, or the server is shutting down", headers={"Retry-After": "1"})
        return engine

    # ---- error handlers: every error is typed JSON ---------------------------------------------

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = APIError(str(exc.detail), headers=dict(exc.headers or {}))
        error.status, error.code = exc.status_code, status_code(exc.status_code)
        return _error_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return _error_response(request, InvalidRequest("invalid request", details))

    async def heavy_slot(request: Request, engine: Engine) -> Slot | None:
        """A heavy-request slot for a large JSON body, waited for before its body is read; None for a light body."""
        if not is_heavy(request.headers, settings):
            return None
        try:
            return await engine.heavy_gate.enter(asyncio.get_running_loop().time() + settings.queue_timeout_s)
        except QueueTimeout:
            metrics.rejected.labels("heavy").inc()
            # Read and drop the body, so that the client, its upload done, reads this answer. Read through the app
            # it is paced like any upload; answered unread, the uploads of 35 flood requests resumed together in
            # uvicorn, and /healthz stalled up to 0.7 s instead of 0.17 s (benchmarks/bench_server_lexicon_flood.py).
            async for _ in request.stream():
                pass
            raise Overloaded(f"server busy: {settings.heavy_requests} large requests are being read; retry later",
                             headers={"Retry-After": str(settings.retry_after_s)}) from None

    # ---- routes ----------------------------------------------------------------------------------

    @app.post("/v1/recognize", response_model=RecognizeResponse, responses=ERROR_RESPONSES,
              openapi_extra=RECOGNIZE_BODY, dependencies=[Depends(require_api_key)], tags=["ocr"])
    async def recognize(request: Request, engine: Engine = Depends(require_ready)) -> Response:
        """Read the text of word crops sent as multipart parts named `files` or as base64 JSON."""
        started = time.perf_counter()
        slot = await heavy_slot(request, engine)
        try:
            return await _recognize(request, engine, started, slot)
        finally:
            if slot is not None:
                slot.leave()

    async def _recognize(request: Request, engine: Engine, started: float, slot: Slot | None) -> Response:
        """The work of /v1/recognize; a heavy request holds ``slot``, given back early when its lexicons are small."""
        retry = {"Retry-After": str(settings.retry_after_s)}
        parsed = await parse_recognize(request, settings, engine.offload if slot is not None else None)
        request.state.images = len(parsed.images)
        if slot is not None and parsed.lexicon_words <= settings.max_lexicon_words:
            # Its memory is about its body's, like any request's: the slot goes to the next one now. A request with
            # more lexicon words keeps it until answered, as its lexicons stay in memory until then.
            slot.leave()
        opts = parsed.options
        engine.check_model(opts.model)
        lexicon = image_lexicons = None
        if opts.lexicon is not None or any(img.lexicon is not None for img in parsed.images):
            try:
                lexicon, image_lexicons = await engine.offload(engine.build_lexicons, opts.lexicon, parsed.images)
            except ValueError as e:
                raise InvalidRequest(str(e)) from None
        options = DecodeOptions(opts.decoder, opts.beam_width, lexicon, opts.lm_weight, opts.orientation)
        try:
            results = await engine.recognize(parsed.images, options, image_lexicons)
        except QueueFull as e:
            metrics.rejected.labels("full").inc()
            raise Overloaded(f"server busy: {e}; retry later", headers=retry) from None
        except QueueTimeout as e:
            metrics.rejected.labels("timeout").inc()
            raise Overloaded(f"server busy: {e}; retry later", headers=retry) from None
        except BatcherClosed as e:
            metrics.rejected.labels("closed").inc()
            raise NotReady(str(e), headers=retry) from None
        except DecoderOptionError as e:  # an option the model's kind cannot honour (a lexicon for the attention decoder)
            raise InvalidRequest(str(e)) from None
        body = {"model": engine.name, "results": results, "elapsed_ms": round((time.perf_counter() - started) * 1000, 2)}
        return JSONResponse(body)

    @app.post("/v1/read", response_model=ReadResponse, responses=READ_ERROR_RESPONSES,
              openapi_extra=READ_BODY, dependencies=[Depends(require_api_key)], tags=["ocr"])
    async def read(request: Request, engine: Engine = Depends(require_ready)) -> Response:
        """Find and read the words of whole photos (multipart parts named `files`, or base64 JSON): each word with
        its text, confidence, polygon and line, each line, the photo's size and the time of each stage."""
        started = time.perf_counter()
        retry = {"Retry-After": str(settings.retry_after_s)}
        slot = await heavy_slot(request, engine)
        try:
            parsed = await parse_read(request, settings, engine.offload if slot is not None else None)
        finally:
            if slot is not None:
                slot.leave()  # its body is parsed: what remains is the photos' bytes, as for any request
        request.state.images = len(parsed.images)
        lexicon = None
        if parsed.options.lexicon is not None:
            try:
                lexicon, _ = await engine.offload(engine.build_lexicons, parsed.options.lexicon, [])
            except ValueError as e:
                raise InvalidRequest(str(e)) from None
        try:
            results = await photos.read(parsed.images, parsed.options, lexicon)
        except DecoderOptionError as e:  # a lexicon for a kind without per-frame outputs
            raise InvalidRequest(str(e)) from None
        except BackendError as e:
            raise DetectorUnavailable(str(e)) from None
        except QueueTimeout:
            metrics.rejected.labels("photo").inc()
            raise Overloaded("server busy: photos are being read; retry later", headers=retry) from None
        except BatcherClosed as e:
            metrics.rejected.labels("closed").inc()
            raise NotReady(str(e), headers=retry) from None
        body = {"model": photos.model_name or engine.name, "detector": photos.describe()["detector"],
                "results": results,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 2)}
        return JSONResponse(body)

    @app.get("/v1/model", dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES, tags=["ocr"])
    async def model_info(engine: Engine = Depends(require_ready)) -> dict[str, Any]:
        """The loaded model: name, architecture, charset, parameters and the model card's metrics."""
        return {**engine.info, "server": {
            "max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms, "max_images": settings.max_images,
            "max_body_bytes": settings.max_body_bytes, "max_pixels": settings.max_pixels,
            "body_timeout_s": settings.body_timeout_s, "max_uploads": settings.max_uploads,
            "decode_workers": settings.decode_workers, "max_decode_pixels": settings.max_decode_pixels,
            "max_beam_width": settings.max_beam_width, "max_lexicon_words": settings.max_lexicon_words,
            "max_request_lexicon_words": settings.max_request_lexicon_words, "heavy_requests": settings.heavy_requests},
            "photos": photos.describe()}

    @app.head("/healthz", include_in_schema=False)  # load balancers probe with HEAD too
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.head("/readyz", include_in_schema=False)
    @app.get("/readyz", tags=["ops"], responses={503: {"model": ErrorResponse}})
    async def readyz(engine: Engine = Depends(require_ready)) -> dict[str, Any]:
        """Readiness: the model is loaded and the batcher takes work."""
        assert engine.batcher is not None
        return {"status": "ready", "model": engine.name, "queue_depth": engine.batcher.depth}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics of this process (text exposition format)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    page = resources.files("crnn_server.static").joinpath("index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        """The web page: pick or drop word images and see what the model reads."""
        return HTMLResponse(page)

    # Observability sits inside CORS so that preflights are answered before it and every
    # response it writes (413 included) still gets the CORS headers.
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes,
                       access_log=settings.access_log, body_timeout_s=settings.body_timeout_s,
                       max_uploads=settings.max_uploads)
    if settings.cors_origins:
        app.add_middleware(
            JSONCORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", API_KEY_HEADER, "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    _add_request_schemas(app)
    _label_routes(app)
    return app


class JSONCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, answering a refused preflight in the API's JSON error format."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        message = bytes(response.body).decode("utf-8", "replace")  # e.g. "Disallowed CORS origin, method"
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
        body = {"error": {"code": "cors_refused", "message": message}, "request_id": None}
        return JSONResponse(body, status_code=response.status_code, headers=headers)


def _label_routes(app: FastAPI) -> None:
    """Make the routes FastAPI adds itself (/docs, /openapi.json, the /docs-assets mount) name themselves in
    the request scope as API routes do, so that metrics and access logs label them by path, not <unmatched>."""
    for route in app.router.routes:
        if isinstance(route, APIRoute):
            continue
        matches = route.matches

        def labelled(scope: Scope, _matches: Any = matches, _route: BaseRoute = route) -> tuple[Match, Scope]:
            match, child = _matches(scope)
            if match != Match.NONE:
                child["route"] = _route
            return match, child

        route.matches = labelled  # type: ignore[method-assign]


def _add_request_schemas(app: FastAPI) -> None:
    """Put RecognizeJSON and ReadJSON (the hand-parsed JSON bodies) into the OpenAPI components that RECOGNIZE_BODY
    and READ_BODY refer to."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (RecognizeJSON, ReadJSON):
                defs = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(defs.pop("$defs", {}))
                components[model.__name__] = defs
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: settings come from $CRNN_SERVER_SETTINGS (set by `crnn serve`)."""
    import os

    from crnn_server.settings import ENV_SETTINGS

    text = os.environ.get(ENV_SETTINGS)
    return create_app(Settings.from_json(text) if text else Settings.from_env(), freeze_heap=True)
