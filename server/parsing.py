"""Reading POST /v1/recognize and POST /v1/read bodies (multipart or JSON) into images and validated options."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from json.decoder import scanstring
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.requests import Request

from crnn.decoding.ctc_decode import DEFAULT_DECODER
from crnn.detection.photo_reader import MIN_LINE_CONFIDENCE
from crnn.errors import InvalidImageError
from crnn_server.errors import (
    EmptyRequest,
    InvalidRequest,
    LexiconTooLarge,
    MalformedBody,
    NoImages,
    TooManyImages,
    UnsupportedMediaType,
)
from crnn_server.request_types import ImageInput, decode_base64
from crnn_server.settings import Settings

IMAGE_FIELDS = ("files", "files[]")
OPTION_FIELDS = ("decoder", "beam_width", "lm_weight", "lexicon", "orientation", "model")
READ_OPTION_FIELDS = ("decoder", "beam_width", "lm_weight", "lexicon", "split", "min_confidence")
MAX_NAME_CHARS = 256
MAX_FIELD_BYTES = 1024 * 1024  # one non-file form field, and the lexicon fields together (a lexicon of many words fits)
MAX_WORD_CHARS = 256
# A JSON body up to this size is parsed on the event loop (well under a millisecond); a larger one, or one of unknown
# length, is a heavy request: parsed in a worker thread, in one of the server's heavy_requests slots.
LIGHT_BODY_BYTES = 64 * 1024

# Runs a function in a worker thread: how parse_recognize takes a heavy body's parsing off the event loop.
Offload = Callable[..., Awaitable[Any]]


class RecognizeOptions(BaseModel):
    """Decoding options of a request."""

    model_config = ConfigDict(extra="forbid")

    decoder: Literal["greedy", "beam", "lm"] = Field(
        DEFAULT_DECODER, description="CTC decoder: lm (default): beam search with the character language model (fewer "
        "misread words; docs/language_model.md), greedy (6-13% faster) or prefix beam search alone.")
    # Strict: a JSON true, 5.0 or "5" is refused, not read as a number (multipart's text fields are converted first).
    beam_width: int = Field(
        10, ge=1, strict=True, description="Beams kept by the beam and lm decoders (at most the server's --max-beam-width).")
    lm_weight: float | None = Field(None, ge=0, le=10, strict=True,
                                    description="The lm decoder's language-model weight (default: the tuned one); "
                                    "only with decoder lm.")
    lexicon: list[str] | None = Field(
        None, description="Allowed words for every image: each text is snapped to the likeliest word, matched "
        "case-insensitively and returned in the case the image shows (results then carry in_lexicon).")
    orientation: Literal["none", "auto"] = Field(
        "none", description="none: read crops as they come; auto: a small classifier says whether a crop's text is "
        "turned 90/180/270 degrees or stacked letters, and it is turned upright first (results then carry orientation).")
    model: str | None = Field(
        None, max_length=64, description="The shipped model to read with (e.g. default, real): it must be the one the "
        "server serves (`crnn serve --model NAME`; GET /v1/model's shipped_model), else 422 model_not_loaded. Default: "
        "the server's model.")

    @field_validator("lm_weight")
    @classmethod
    def _lm_weight_needs_lm(cls, value: float | None, info: ValidationInfo) -> float | None:
        return lm_weight_needs_lm(value, info)


def lm_weight_needs_lm(value: float | None, info: ValidationInfo) -> float | None:
    """Refuse an lm_weight beside a decoder other than lm (the options' validators of /v1/recognize and /v1/read)."""
    # As `crnn ocr --lm-weight` refuses it: the other decoders have no language model to weigh.
    decoder = info.data.get("decoder")
    if value is not None and decoder is not None and decoder != "lm":
        raise PydanticCustomError("lm_weight_needs_lm", "lm_weight needs decoder lm, not {decoder}",
                                  {"decoder": decoder})
    return value


class ImageIn(BaseModel):
    """One image of a JSON request."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=MAX_NAME_CHARS, description="Echoed in the result (default: imageN).")
    data: str = Field(..., description="The encoded image file (PNG, JPEG, ...) in base64; a data: URL is accepted.")
    lexicon: list[str] | None = Field(
        None, min_length=1, description="This image's own allowed words (e.g. a benchmark's per-image lexicon); "
        "overrides the request's lexicon. At most the server's max_lexicon_words, characters of the model's charset.")


class RecognizeJSON(RecognizeOptions):
    """The JSON form of a request: images in base64 plus options."""

    images: list[ImageIn] = Field(..., description="Word crops, read in this order.")


class ReadOptions(BaseModel):
    """Options of a POST /v1/read request (whole photos)."""

    model_config = ConfigDict(extra="forbid")

    decoder: Literal["greedy", "beam", "lm"] = Field(
        DEFAULT_DECODER, description="CTC decoder of the text lines, as for /v1/recognize.")
    beam_width: int = Field(
        10, ge=1, strict=True, description="Beams kept by the beam and lm decoders (at most the server's --max-beam-width).")
    lm_weight: float | None = Field(None, ge=0, le=10, strict=True,
                                    description="The lm decoder's language-model weight on the lines (default: the "
                                    "tuned one); only with decoder lm, as for /v1/recognize.")
    lexicon: list[str] | None = Field(
        None, description="Allowed words: each word of a photo (not line) is decoded from its own frames under it, as "
        "/v1/recognize reads a crop, and keeps its box (words then carry in_lexicon). At most the server's "
        "max_lexicon_words, characters of the model's charset.")
    split: Literal["ctc", "chars"] = Field(
        "ctc", description="How a line's box is split into word boxes: ctc (default), from where the recognizer's CTC "
        "alignment puts each word's characters; chars, by character count.")
    min_confidence: float = Field(
        MIN_LINE_CONFIDENCE, ge=0, le=1, strict=True,
        description="Lines whose mean character confidence is below this are dropped (counted in dropped).")

    @field_validator("lm_weight")
    @classmethod
    def _lm_weight_needs_lm(cls, value: float | None, info: ValidationInfo) -> float | None:
        return lm_weight_needs_lm(value, info)


class PhotoIn(BaseModel):
    """One photo of a JSON POST /v1/read request."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=MAX_NAME_CHARS, description="Echoed in the result (default: imageN).")
    data: str = Field(..., description="The encoded photo (JPEG, PNG, ...) in base64; a data: URL is accepted.")


class ReadJSON(ReadOptions):
    """The JSON form of a POST /v1/read request: photos in base64 plus options."""

    images: list[PhotoIn] = Field(..., description="Photos, read in this order (at most the server's --max-photos).")


@dataclass
class ParsedRead:
    """A /v1/read request's photos (in order) and its validated options."""

    images: list[ImageInput]
    options: ReadOptions


@dataclass
class ParsedRequest:
    """A request's images (in order) and its validated options."""

    images: list[ImageInput]
    options: RecognizeOptions

    @property
    def lexicon_words(self) -> int:
        """Words of the request's lexicons in all: the request-wide one and every image's."""
        return len(self.options.lexicon or ()) + sum(len(img.lexicon) for img in self.images if img.lexicon is not None)


def _errors(e: ValidationError) -> list[dict[str, Any]]:
    # No input echo: it may be megabytes of base64.
    return [{"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in e.errors(include_url=False, include_input=False, include_context=False)]


def check_options(options: RecognizeOptions, settings: Settings) -> RecognizeOptions:
    """Apply the server's limits to already well-typed options (raises InvalidRequest)."""
    if options.beam_width > settings.max_beam_width:
        raise InvalidRequest(f"beam_width must be at most {settings.max_beam_width}, got {options.beam_width}")
    if options.lexicon is not None:
        check_lexicon_size(options.lexicon, settings, "lexicon")
    return options


def check_lexicon_size(words: Sequence[str], settings: Settings, where: str) -> None:
    """Refuse a lexicon (request-wide or one image's, named by ``where``) over the server's limits or with an empty or
    whitespace-only word (InvalidRequest)."""
    if len(words) > settings.max_lexicon_words:
        raise InvalidRequest(f"{where} has {len(words):,} words; at most {settings.max_lexicon_words:,} are accepted")
    if words and max(map(len, words)) > MAX_WORD_CHARS:  # map: C loops, a 10,000-word list in well under 1 ms
        raise InvalidRequest(f"{where}: words must be at most {MAX_WORD_CHARS} characters long")
    if not all(map(str.strip, words)):
        # A blank word would otherwise be a lexicon entry, and could come back as an image's text.
        i = next(i for i, w in enumerate(words) if not w.strip())
        raise InvalidRequest(f"{where}: word {i} ({words[i]!r}) is empty or only whitespace")


def check_lexicon_budget(words: int, settings: Settings) -> None:
    """Refuse a request whose lexicons hold more words in all than the per-request budget (LexiconTooLarge, 413)."""
    if words > settings.max_request_lexicon_words:
        raise LexiconTooLarge(
            f"the request's lexicons hold over {settings.max_request_lexicon_words:,} words in all (the request-wide "
            "lexicon and every image's); send fewer images per request, or one request-wide lexicon",
            {"limit_words": settings.max_request_lexicon_words})


def is_heavy(headers: Headers, settings: Settings) -> bool:
    """Whether a request is heavy: a JSON body over LIGHT_BODY_BYTES, or of unknown length (chunked). A body over the
    size limit is not: it is refused on its first read, without waiting for a slot."""
    media, _ = parse_options_header(headers.get("content-type"))
    if not (media == b"application/json" or media.endswith(b"+json")):
        return False
    length = headers.get("content-length", "")
    if not length.isdigit():
        return True
    return LIGHT_BODY_BYTES < int(length) <= settings.max_body_bytes


def _body_media(request: Request, what: str) -> tuple[bytes, dict[bytes, bytes]]:
    """The body's media type and its parameters; EmptyRequest when the request has no body (``what``: its images)."""
    raw_type = request.headers.get("content-type")
    length = request.headers.get("content-length")
    if length == "0" or (not raw_type and length is None and "chunked" not in request.headers.get("transfer-encoding", "")):
        raise EmptyRequest(f"the request has no body: send {what} as multipart/form-data or JSON")
    return parse_options_header(raw_type)


def _boundary(params: dict[bytes, bytes]) -> bytes:
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedBody("multipart/form-data without a boundary parameter")
    return boundary


def _is_json(media: bytes) -> bool:
    return media == b"application/json" or media.endswith(b"+json")


def _unsupported(request: Request) -> UnsupportedMediaType:
    shown = request.headers.get("content-type") or "none"
    return UnsupportedMediaType(
        f"content type {shown!r} is not supported: use multipart/form-data (parts named 'files') "
        "or application/json ({\"images\": [{\"data\": base64}]})")


async def parse_recognize(request: Request, settings: Settings, offload: Offload | None = None) -> ParsedRequest:
    """Images and options of a recognize request; raises a typed APIError for any malformed request.

    ``offload(fn, *args)`` runs a function in a worker thread: given, a JSON body is parsed there (a heavy request),
    in pieces that let the event loop run in between; else it is parsed here, whole.
    """
    media, params = _body_media(request, "images")
    if media == b"multipart/form-data":
        parsed = _from_parts(await _parse_multipart(request, _boundary(params), settings.max_images))
    elif _is_json(media):
        parsed = await _parse_json(request, settings, offload)
    else:
        raise _unsupported(request)
    if not parsed.images:
        raise NoImages("the request holds no image: send one or more parts named 'files', or a non-empty 'images' list")
    check_options(parsed.options, settings)
    check_lexicon_budget(parsed.lexicon_words, settings)
    return parsed


async def parse_read(request: Request, settings: Settings, offload: Offload | None = None) -> ParsedRead:
    """Photos and options of a POST /v1/read request (the upload forms of /v1/recognize, at most ``max_photos``
    photos, the options of ReadOptions); raises a typed APIError for any malformed request. ``offload``: as for
    :func:`parse_recognize` (a heavy JSON body is parsed in a worker thread, whole: it has no lexicons to count)."""
    media, params = _body_media(request, "a photo")
    if media == b"multipart/form-data":
        parts = await _parse_multipart(request, _boundary(params), settings.max_photos, READ_OPTION_FIELDS)
        images, fields = _fields(parts)
        parsed = ParsedRead(images, _options(ReadOptions, fields))
    elif _is_json(media):
        body = await request.body()
        if not body.strip():
            raise EmptyRequest("the request body is empty")
        parsed = await offload(_read_json, body, settings) if offload is not None else _read_json(body, settings)
    else:
        raise _unsupported(request)
    if not parsed.images:
        raise NoImages("the request holds no photo: send one in a part named 'files', or a non-empty 'images' list")
    if parsed.options.beam_width > settings.max_beam_width:
        raise InvalidRequest(f"beam_width must be at most {settings.max_beam_width}, got {parsed.options.beam_width}")
    if parsed.options.lexicon is not None:
        check_lexicon_size(parsed.options.lexicon, settings, "lexicon")
    return parsed


def _read_json(body: bytes, settings: Settings) -> ParsedRead:
    """The photos and options of a /v1/read JSON body (in a worker thread for a heavy request)."""
    try:
        req = ReadJSON.model_validate_json(body)
    except ValidationError as e:
        errors = _errors(e)
        if any(err["type"] == "json_invalid" for err in errors):
            raise MalformedBody("the body is not valid JSON", errors) from None
        raise _refuse(errors) from None
    if len(req.images) > settings.max_photos:
        raise TooManyImages(f"{len(req.images)} photos in one request; at most {settings.max_photos} are accepted",
                            {"limit": settings.max_photos})
    images = []
    for i, img in enumerate(req.images):
        name = img.name or f"image{i}"
        try:
            images.append(ImageInput(name, data=decode_base64(img.data)))
        except InvalidImageError as e:
            images.append(ImageInput(name, error=str(e)))
    return ParsedRead(images, ReadOptions.model_validate(req.model_dump(exclude={"images"})))


async def _parse_json(request: Request, settings: Settings, offload: Offload | None) -> ParsedRequest:
    body = await request.body()
    if not body.strip():
        raise EmptyRequest("the request body is empty")
    if offload is None:
        return _json_request(body, settings, False)
    return await offload(_json_request, body, settings, True)


def _refuse(errors: list[dict[str, Any]]) -> InvalidRequest:
    return InvalidRequest("invalid request: " + "; ".join(
        f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in errors[:5]), errors)


def _validate_json(body: bytes, settings: Settings, pieces: bool) -> RecognizeJSON:
    """The body as a RecognizeJSON (MalformedBody or InvalidRequest if it is not one). With ``pieces``, the images are
    validated one at a time where the body allows it (see _validate_in_pieces), stopping at the lexicon budget."""
    located = _images_items(body) if pieces else None
    if located is not None:
        req = _validate_in_pieces(*located, settings)
        if req is not None:
            return req
    try:
        return RecognizeJSON.model_validate_json(body)
    except ValidationError as e:
        errors = _errors(e)
        if any(err["type"] == "json_invalid" for err in errors):
            raise MalformedBody("the body is not valid JSON", errors) from None
        raise _refuse(errors) from None


_WS = re.compile(r"[ \t\n\r]*")  # JSON's whitespace
_SCANNER = json.JSONDecoder()


def _images_items(body: bytes) -> tuple[str, int, int, list[tuple[int, int]]] | None:
    """The body's text, where its top-level ``images`` array starts and ends, and where each of its items does; None
    when the body is not a UTF-8 JSON object with one ``images`` array that Python's JSON scanner reads (it is then
    validated whole, as before)."""
    try:
        text = body.decode("utf-8")
        i = _WS.match(text).end()  # type: ignore[union-attr]
        if not text.startswith("{", i):
            return None
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        found: tuple[int, int, list[tuple[int, int]]] | None = None
        while text.startswith('"', i):
            key, i = scanstring(text, i + 1)
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            if not text.startswith(":", i):
                return None
            i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
            if key != "images":
                _, i = _SCANNER.raw_decode(text, i)
            elif found is not None or not text.startswith("[", i):
                return None
            else:
                start, items = i, []
                i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
                if text.startswith("]", i):
                    i += 1
                else:
                    while True:  # strict: what this loop reads is replaced by "[]" before pydantic sees the rest
                        _, end = _SCANNER.raw_decode(text, i)
                        items.append((i, end))
                        i = _WS.match(text, end).end()  # type: ignore[union-attr]
                        if text.startswith("]", i):
                            i += 1
                            break
                        if not text.startswith(",", i):
                            return None
                        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
                found = (start, i, items)
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            if not text.startswith(",", i):
                break
            i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        # What follows (the closing brace, or anything wrong) stays in the text pydantic validates.
        return None if found is None else (text, *found)
    except (ValueError, RecursionError):  # not UTF-8, not JSON (JSONDecodeError), too deep, an over-long integer
        return None


def _validate_in_pieces(text: str, start: int, end: int, items: list[tuple[int, int]],
                        settings: Settings) -> RecognizeJSON | None:
    """Validate the body without its images (``[]`` in their place), then each image on its own, counting lexicon words
    against the request's budget as it goes. Pydantic holds the GIL for a whole call: one call for a 7 MB body of
    lexicons held it (and so the event loop) for 120 ms; one image's takes a few ms. None when a piece is not valid
    JSON: the body is then validated whole, for pydantic's own message and position. Answers as whole validation does,
    except that too many images (TooManyImages) or lexicon words (LexiconTooLarge) are refused as soon as they are
    seen, before the other images are validated."""
    errors: list[dict[str, Any]] = []
    try:
        req = RecognizeJSON.model_validate_json(text[:start] + "[]" + text[end:])
    except ValidationError as e:
        errors = _errors(e)
        if any(err["type"] == "json_invalid" for err in errors):
            return None
        req = None
    if len(items) > settings.max_images:
        raise TooManyImages(f"{len(items)} images in one request; at most {settings.max_images} are accepted",
                            {"limit": settings.max_images})
    words = len(req.lexicon or ()) if req is not None else 0
    images: list[ImageIn] = []
    for i, (s, e) in enumerate(items):
        try:
            image = ImageIn.model_validate_json(text[s:e])
        except ValidationError as err:
            found = _errors(err)
            if any(f["type"] == "json_invalid" for f in found):
                return None
            errors += [{**f, "loc": ["images", i, *f["loc"]]} for f in found]
            continue
        words += len(image.lexicon or ())
        check_lexicon_budget(words, settings)
        images.append(image)
    if errors or req is None:
        raise _refuse(errors)
    req.images = images
    return req


def _json_request(body: bytes, settings: Settings, pieces: bool) -> ParsedRequest:
    """The images and options of a JSON body (in a worker thread for a heavy request)."""
    req = _validate_json(body, settings, pieces)
    if len(req.images) > settings.max_images:
        raise TooManyImages(f"{len(req.images)} images in one request; at most {settings.max_images} are accepted",
                            {"limit": settings.max_images})
    images = []
    for i, img in enumerate(req.images):
        name = img.name or f"image{i}"
        if img.lexicon is not None:
            check_lexicon_size(img.lexicon, settings, f"images.{i}.lexicon")
        try:
            lexicon = tuple(img.lexicon) if img.lexicon is not None else None
            images.append(ImageInput(name, data=decode_base64(img.data), lexicon=lexicon))
        except InvalidImageError as e:
            images.append(ImageInput(name, error=str(e)))
    options = RecognizeOptions(decoder=req.decoder, beam_width=req.beam_width, lm_weight=req.lm_weight,
                               lexicon=req.lexicon, orientation=req.orientation, model=req.model)
    return ParsedRequest(images, options)


_FORM_INT = re.compile(r"[0-9]+")
_FORM_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _form_number(name: str, value: str) -> Any:
    """A form field's text as the number its option takes, when it spells one; otherwise the text, which the options'
    strict number fields then refuse (as they refuse JSON's true or "5")."""
    if name == "beam_width" and _FORM_INT.fullmatch(value) and len(value) < 20:  # int() refuses over 4,300 digits
        return int(value)
    if name in ("lm_weight", "min_confidence") and _FORM_FLOAT.fullmatch(value):
        return float(value)
    return value


class _Part:
    __slots__ = ("headers", "data", "name", "filename", "is_image")

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.data = bytearray()
        self.name = ""
        self.filename: str | None = None
        self.is_image = False


async def _parse_multipart(request: Request, boundary: bytes, max_images: int,
                           option_fields: Sequence[str] = OPTION_FIELDS) -> list[_Part]:
    """The parts of a multipart body: images (parts named 'files', at most ``max_images``) and ``option_fields``."""
    # Parsed in memory with python-multipart's push parser: the body is already capped by the
    # size limit, and word crops are small, so spooling to temporary files would only cost time.
    parts: list[_Part] = []
    current = _Part()
    header_field = bytearray()
    header_value = bytearray()
    n_images = 0
    lexicon_bytes = 0
    ended = False

    def on_part_begin() -> None:
        nonlocal current
        current = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        current.headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal n_images
        disposition, opts = parse_options_header(current.headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in opts:
            raise MalformedBody("a multipart part has no Content-Disposition: form-data; name=...")
        current.name = opts[b"name"].decode("utf-8", "replace")
        if b"filename" in opts:
            current.filename = opts[b"filename"].decode("utf-8", "replace")[:MAX_NAME_CHARS]
        if current.name in IMAGE_FIELDS:
            current.is_image = True
            n_images += 1
            if n_images > max_images:
                raise TooManyImages(f"more than {max_images} images in one request", {"limit": max_images})
        elif current.name not in option_fields:
            raise InvalidRequest(
                f"unknown form field {current.name!r}: images go in parts named 'files'; "
                f"options are {', '.join(option_fields)}")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal lexicon_bytes
        current.data.extend(data[start:end])
        if not current.is_image and len(current.data) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"form field {current.name!r} is over {MAX_FIELD_BYTES:,} bytes")
        if current.name == "lexicon":
            # The field may repeat: its parts together are bounded too, or 16 MiB of lines would be split into
            # millions of words (on the event loop) before the word limit refused them.
            lexicon_bytes += end - start
            if lexicon_bytes > MAX_FIELD_BYTES:
                raise InvalidRequest(f"the lexicon fields are over {MAX_FIELD_BYTES:,} bytes in all")

    def on_part_end() -> None:
        parts.append(current)

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end, "on_end": on_end,
    }, max_header_count=16)
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except FormParserError as e:
        raise MalformedBody(f"invalid multipart body ({e})") from None
    if total == 0:
        raise EmptyRequest("the request body is empty")
    if not ended:
        raise MalformedBody("the multipart body ends before its closing boundary")
    return parts


def _fields(parts: list[_Part]) -> tuple[list[ImageInput], dict[str, Any]]:
    """The images of a multipart body's parts, and its option fields by name (``lexicon``: its words)."""
    images: list[ImageInput] = []
    fields: dict[str, Any] = {}
    words: list[str] = []
    for part in parts:
        if part.is_image:
            images.append(ImageInput(part.filename or f"image{len(images)}", data=bytes(part.data)))
            continue
        try:
            value = part.data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"form field {part.name!r} is not UTF-8 text") from None
        if part.name == "lexicon":
            # Repeated fields and/or one word per line (as a textarea sends them).
            words += [w.strip() for w in value.splitlines() if w.strip()]
            fields["lexicon"] = words
        elif part.name in fields:
            raise InvalidRequest(f"form field {part.name!r} is given more than once")
        else:
            fields[part.name] = _form_number(part.name, value.strip())
    return images, fields


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def _options(model: type[OptionsT], fields: dict[str, Any]) -> OptionsT:
    """The form's option fields validated as ``model`` (InvalidRequest listing the problems)."""
    try:
        return model.model_validate(fields)
    except ValidationError as e:
        errors = _errors(e)
        raise InvalidRequest("invalid options: " + "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in errors[:5]), errors) from None


def _from_parts(parts: list[_Part]) -> ParsedRequest:
    images, fields = _fields(parts)
    return ParsedRequest(images, _options(RecognizeOptions, fields))
