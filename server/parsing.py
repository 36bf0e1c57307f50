"""Reading POST /v1/recognize bodies (multipart or JSON) into images and validated options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from crnn.ctc_decode import DEFAULT_DECODER
from crnn.errors import InvalidImageError
from crnn_server.errors import EmptyRequest, InvalidRequest, MalformedBody, NoImages, TooManyImages, UnsupportedMediaType
from crnn_server.request_types import ImageInput, decode_base64
from crnn_server.settings import Settings

IMAGE_FIELDS = ("files", "files[]")
OPTION_FIELDS = ("decoder", "beam_width", "lm_weight", "lexicon", "orientation")
MAX_NAME_CHARS = 256
MAX_FIELD_BYTES = 1024 * 1024  # one non-file form field (a lexicon of many words fits)
MAX_WORD_CHARS = 256


class RecognizeOptions(BaseModel):
    """Decoding options of a request."""

    model_config = ConfigDict(extra="forbid")

    decoder: Literal["greedy", "beam", "lm"] = Field(
        DEFAULT_DECODER, description="CTC decoder: lm (default): beam search with the character language model (fewer "
        "misread words; docs/language_model.md), greedy (about twice as fast) or prefix beam search alone.")
    beam_width: int = Field(10, ge=1, description="Beams kept by the beam and lm decoders (at most the server's --max-beam-width).")
    lm_weight: float | None = Field(None, ge=0, le=10, description="The lm decoder's language-model weight (default: the tuned one).")
    lexicon: list[str] | None = Field(
        None, description="Allowed words for every image: each text is snapped to the likeliest word, matched "
        "case-insensitively and returned in the case the image shows (results then carry in_lexicon).")
    orientation: Literal["none", "auto"] = Field(
        "none", description="none: read crops as they come; auto: a small classifier says whether a crop's text is "
        "turned 90/180/270 degrees or stacked letters, and it is turned upright first (results then carry orientation).")


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


@dataclass
class ParsedRequest:
    """A request's images (in order) and its validated options."""

    images: list[ImageInput]
    options: RecognizeOptions


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


def check_lexicon_size(words: list[str], settings: Settings, where: str) -> None:
    """Refuse a lexicon (request-wide or one image's, named by ``where``) over the server's limits (InvalidRequest)."""
    if len(words) > settings.max_lexicon_words:
        raise InvalidRequest(f"{where} has {len(words):,} words; at most {settings.max_lexicon_words:,} are accepted")
    if any(len(w) > MAX_WORD_CHARS for w in words):
        raise InvalidRequest(f"{where}: words must be at most {MAX_WORD_CHARS} characters long")


async def parse_recognize(request: Request, settings: Settings) -> ParsedRequest:
    """Images and options of a recognize request; raises a typed APIError for any malformed request."""
    raw_type = request.headers.get("content-type")
    media, params = parse_options_header(raw_type)
    length = request.headers.get("content-length")
    if length == "0" or (not raw_type and length is None and "chunked" not in request.headers.get("transfer-encoding", "")):
        raise EmptyRequest("the request has no body: send images as multipart/form-data or JSON")
    if media == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise MalformedBody("multipart/form-data without a boundary parameter")
        parsed = await _parse_multipart(request, boundary, settings)
    elif media == b"application/json" or media.endswith(b"+json"):
        parsed = await _parse_json(request, settings)
    else:
        shown = raw_type or "none"
        raise UnsupportedMediaType(
            f"content type {shown!r} is not supported: use multipart/form-data (parts named 'files') "
            "or application/json ({\"images\": [{\"data\": base64}]})")
    if not parsed.images:
        raise NoImages("the request holds no image: send one or more parts named 'files', or a non-empty 'images' list")
    check_options(parsed.options, settings)
    return parsed


async def _parse_json(request: Request, settings: Settings) -> ParsedRequest:
    body = await request.body()
    if not body.strip():
        raise EmptyRequest("the request body is empty")
    try:
        req = RecognizeJSON.model_validate_json(body)
    except ValidationError as e:
        errors = _errors(e)
        if any(err["type"] == "json_invalid" for err in errors):
            raise MalformedBody("the body is not valid JSON", errors) from None
        raise InvalidRequest("invalid request: " + "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in errors[:5]), errors) from None
    if len(req.images) > settings.max_images:
        raise TooManyImages(f"{len(req.images)} images in one request; at most {settings.max_images} are accepted",
                            {"limit": settings.max_images})
    images = []
    for i, img in enumerate(req.images):
        name = img.name or f"image{i}"
        if img.lexicon is not None:
            check_lexicon_size(img.lexicon, settings, f"images.{i}.lexicon")
        try:
            images.append(ImageInput(name, data=decode_base64(img.data), lexicon=img.lexicon))
        except InvalidImageError as e:
            images.append(ImageInput(name, error=str(e)))
    options = RecognizeOptions(decoder=req.decoder, beam_width=req.beam_width, lm_weight=req.lm_weight,
                               lexicon=req.lexicon, orientation=req.orientation)
    return ParsedRequest(images, options)


class _Part:
    __slots__ = ("headers", "data", "name", "filename", "is_image")

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.data = bytearray()
        self.name = ""
        self.filename: str | None = None
        self.is_image = False


async def _parse_multipart(request: Request, boundary: bytes, settings: Settings) -> ParsedRequest:
    # Parsed in memory with python-multipart's push parser: the body is already capped by the
    # size limit, and word crops are small, so spooling to temporary files would only cost time.
    parts: list[_Part] = []
    current = _Part()
    header_field = bytearray()
    header_value = bytearray()
    n_images = 0
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
            if n_images > settings.max_images:
                raise TooManyImages(f"more than {settings.max_images} images in one request",
                                    {"limit": settings.max_images})
        elif current.name not in OPTION_FIELDS:
            raise InvalidRequest(
                f"unknown form field {current.name!r}: images go in parts named 'files'; "
                f"options are {', '.join(OPTION_FIELDS)}")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current.data.extend(data[start:end])
        if not current.is_image and len(current.data) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"form field {current.name!r} is over {MAX_FIELD_BYTES:,} bytes")

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
    return _from_parts(parts)


def _from_parts(parts: list[_Part]) -> ParsedRequest:
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
            fields[part.name] = value.strip()
    try:
        options = RecognizeOptions.model_validate(fields)
    except ValidationError as e:
        errors = _errors(e)
        raise InvalidRequest("invalid options: " + "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in errors[:5]), errors) from None
    return ParsedRequest(images, options)
