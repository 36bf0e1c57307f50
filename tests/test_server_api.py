"""The REST API through an in-process client: endpoints, results, every refused input and its status."""

from __future__ import annotations

import base64
import io
import json
import logging
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
with warnings.catch_warnings():
    # Starlette >= 1.x warns that its TestClient will move from httpx to httpx2.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from crnn import Charset, Recognizer
from crnn_server import Settings, create_app
from crnn_server.app import API_KEY_HEADER
from tests.tiny_models import tiny_recognizer
from tests.word_images import render_word

WORDS = ["hello", "a", "recognition"]


def png(image: np.ndarray | Image.Image) -> bytes:
    """PNG bytes of an array or PIL image."""
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


LIMITS = dict(max_wait_ms=1.0, max_images=4, max_body_bytes=200_000, max_pixels=1_000_000, max_beam_width=20,
              max_lexicon_words=50)


def make_client(**settings: Any) -> TestClient:
    """A client of a fresh app with a tiny model (use as a context manager to run start-up)."""
    return TestClient(create_app(Settings(**{**LIMITS, **settings}), tiny_recognizer(), model_name="tiny"))


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with make_client() as c:
        yield c


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    return {w: png(render_word(w)) for w in WORDS}


@pytest.fixture(scope="module")
def expected(images: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """What the library itself reads from each image (the server must agree)."""
    rec = tiny_recognizer()
    return {w: p.to_dict() for w, p in zip(images, rec.recognize(list(images.values())))}


def files(items: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "image/png")) for name, data in items]


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert body["request_id"] == r.headers["x-request-id"]
    return body


def assert_same(result: dict[str, Any], want: dict[str, Any]) -> None:
    assert result["text"] == want["text"]
    assert result["confidence"] == pytest.approx(want["confidence"], rel=1e-4, abs=1e-12)
    assert len(result["char_confidences"]) == len(result["text"])


# ---- successful requests -----------------------------------------------------------------------


@pytest.mark.parametrize("order", [WORDS, WORDS[::-1]])
def test_multipart_results_in_request_order(client: TestClient, images: dict[str, bytes],
                                            expected: dict[str, dict[str, Any]], order: list[str]) -> None:
    r = client.post("/v1/recognize", files=files([(f"{w}.png", images[w]) for w in order]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny"
    assert body["elapsed_ms"] > 0
    assert [res["name"] for res in body["results"]] == [f"{w}.png" for w in order]
    for w, res in zip(order, body["results"]):
        assert_same(res, expected[w])


@pytest.mark.parametrize("batch_workers", [1, 3])
def test_width_groups_run_at_once_give_the_same_results(images: dict[str, bytes], expected: dict[str, dict[str, Any]],
                                                        batch_workers: int) -> None:
    # The three words have three widths: one request is three model batches, run up to 3 at a time.
    with make_client(batch_workers=batch_workers) as c:
        r = c.post("/v1/recognize", files=files([(f"{w}.png", images[w]) for w in WORDS]))
    assert r.status_code == 200, r.text
    for w, res in zip(WORDS, r.json()["results"]):
        assert_same(res, expected[w])


@pytest.mark.parametrize("encode", [
    b64,
    lambda d: "data:image/png;base64," + b64(d),
    lambda d: base64.urlsafe_b64encode(d).decode().rstrip("="),
    lambda d: base64.encodebytes(d).decode(),  # wrapped in lines
], ids=["plain", "data-url", "urlsafe-unpadded", "wrapped"])
def test_json_base64_matches_the_library(client: TestClient, images: dict[str, bytes],
                                         expected: dict[str, dict[str, Any]], encode: Any) -> None:
    payload = {"images": [{"name": "first", "data": encode(images["hello"])}, {"data": encode(images["a"])}]}
    r = client.post("/v1/recognize", json=payload)
    assert r.status_code == 200, r.text
    first, second = r.json()["results"]
    assert (first["name"], second["name"]) == ("first", "image1")
    assert_same(first, expected["hello"])
    assert_same(second, expected["a"])


def bad_images() -> list[tuple[str, bytes, str]]:
    good = png(render_word("ok"))
    bomb = png(Image.new("L", (1500, 1000), 255))  # 1.5 Mpx: over the 1 Mpx limit, refused from the header
    return [
        ("not-an-image", b"hello, I am text", "not an image"),
        ("empty", b"", "empty"),
        ("truncated", good[: len(good) // 2], "truncated"),
        ("too-small", png(np.full((2, 2), 255, np.uint8)), "too small"),
        ("too-many-pixels", bomb, "over the limit"),
    ]


@pytest.mark.parametrize("name,data,message", bad_images(), ids=[b[0] for b in bad_images()])
def test_a_bad_image_gets_its_own_error_and_the_others_are_read(
        client: TestClient, images: dict[str, bytes], expected: dict[str, dict[str, Any]],
        name: str, data: bytes, message: str) -> None:
    r = client.post("/v1/recognize", files=files([("a.png", images["hello"]), (name, data), ("b.png", images["a"])]))
    assert r.status_code == 200, r.text
    first, bad, last = r.json()["results"]
    assert_same(first, expected["hello"])
    assert_same(last, expected["a"])
    assert bad["name"] == name and bad["code"] == "invalid_image"
    assert message in bad["error"] and "text" not in bad


def test_json_bad_base64_is_a_per_image_error(client: TestClient, images: dict[str, bytes]) -> None:
    r = client.post("/v1/recognize", json={"images": [{"data": "@@not base64@@"}, {"data": b64(images["a"])}]})
    assert r.status_code == 200
    bad, good = r.json()["results"]
    assert "base64" in bad["error"] and "text" in good


def test_decoder_crash_on_one_file_costs_only_that_file(client: TestClient, images: dict[str, bytes],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    original = Recognizer.prepare

    def flaky(self: Recognizer, source: Any) -> np.ndarray:
        if source == b"boom":  # as a decoder bug on a hostile file might fail, outside the typed errors
            raise struct.error("unpack requires a buffer of 4 bytes")
        return original(self, source)

    monkeypatch.setattr(Recognizer, "prepare", flaky)
    r = client.post("/v1/recognize", files=files([("x", b"boom"), ("y", images["a"])]))
    assert r.status_code == 200
    bad, good = r.json()["results"]
    assert "could not decode" in bad["error"] and "text" in good


@pytest.mark.parametrize("options", [
    {"decoder": "beam"},
    {"decoder": "beam", "beam_width": "3"},
    {"decoder": "greedy", "lexicon": "hello\nworld"},
    {"decoder": "beam", "lexicon": "hello\nworld"},
    {"decoder": "lm"},
    {"decoder": "lm", "beam_width": "4", "lm_weight": "0.3"},
])
def test_decoder_options(client: TestClient, images: dict[str, bytes], options: dict[str, str]) -> None:
    r = client.post("/v1/recognize", files=files([("h", images["hello"]), ("r", images["recognition"])]), data=options)
    assert r.status_code == 200, r.text
    for res in r.json()["results"]:
        assert 0.0 <= res["confidence"] <= 1.0
        if "lexicon" in options:
            assert res["text"] in {"hello", "world"}


def test_json_lexicon_snaps_to_its_words(client: TestClient, images: dict[str, bytes]) -> None:
    r = client.post("/v1/recognize", json={"images": [{"data": b64(images["hello"])}], "lexicon": ["hello", "help"]})
    assert r.status_code == 200
    assert r.json()["results"][0]["text"] in {"hello", "help"}


def test_per_image_lexicons_snap_and_flag(client: TestClient, images: dict[str, bytes]) -> None:
    body = {"images": [{"data": b64(images["hello"]), "lexicon": ["HELLO", "help"]},
                       {"data": b64(images["hello"])},
                       {"data": b64(images["recognition"]), "lexicon": ["HELLO", "help"]}],
            "lexicon": ["world"]}
    r = client.post("/v1/recognize", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["text"].lower() in {"hello", "help"} and results[0]["in_lexicon"] is True
    assert results[1]["text"].lower() == "world" and results[1]["in_lexicon"] is True  # the request's lexicon
    assert results[2]["text"].lower() in {"hello", "help"}
    plain = client.post("/v1/recognize", json={"images": [{"data": b64(images["hello"])}]}).json()["results"][0]
    assert "in_lexicon" not in plain  # no lexicon: results exactly as before


@pytest.mark.parametrize("words,fragment", [
    (["w"] * 51, "images.0.lexicon has 51 words; at most 50"),
    (["ok", "caf\u00e9"], "invalid images.0.lexicon: word 'caf\u00e9' has characters the model cannot read"),
])
def test_per_image_lexicon_errors_say_what_is_wrong(client: TestClient, words: list[str], fragment: str) -> None:
    r = client.post("/v1/recognize", json={"images": [{"data": b64(PNG_1), "lexicon": words}]})
    assert r.status_code == 422 and fragment in r.json()["error"]["message"]


@pytest.mark.parametrize("where", ["request", "image"])
@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_a_blank_lexicon_word_is_refused_not_returned_as_text(client: TestClient, where: str, blank: str) -> None:
    # Issue 36, item 12: a whitespace-only word was a lexicon entry, and came back as an image's text.
    image: dict[str, Any] = {"data": b64(PNG_1)}
    body: dict[str, Any] = {"images": [image], "decoder": "greedy"}
    (image if where == "image" else body)["lexicon"] = ["ok", blank]
    r = client.post("/v1/recognize", json=body)
    message = assert_error(r, 422, "invalid_request")["error"]["message"]
    assert "word 1" in message and "empty or only whitespace" in message
    assert message.startswith("images.0.lexicon" if where == "image" else "lexicon")


@pytest.mark.parametrize("where", ["request", "image"])
@pytest.mark.parametrize("word", ["caf\u00e9", "tab\there"])
def test_a_lexicon_word_the_model_cannot_read_is_refused_never_dropped(client: TestClient, where: str, word: str) -> None:
    # Issue 36, item 8: the request-wide list dropped such words silently (an image's list refused them).
    image: dict[str, Any] = {"data": b64(PNG_1)}
    body: dict[str, Any] = {"images": [image], "decoder": "greedy"}
    (image if where == "image" else body)["lexicon"] = ["ok", word]
    message = assert_error(client.post("/v1/recognize", json=body), 422, "invalid_request")["error"]["message"]
    assert repr(word) in message or "tab" in message, message


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
@pytest.mark.parametrize("form", ["json", "multipart"])
def test_lm_weight_needs_decoder_lm_as_the_cli_says(client: TestClient, decoder: str, form: str) -> None:
    # Issue 36, item 12: lm_weight was ignored with another decoder; `crnn ocr --lm-weight` refuses that.
    if form == "json":
        r = client.post("/v1/recognize", json={"images": [{"data": b64(PNG_1)}], "decoder": decoder, "lm_weight": 0.5})
    else:
        r = client.post("/v1/recognize", files=files([("x.png", PNG_1)]), data={"decoder": decoder, "lm_weight": "0.5"})
    body = assert_error(r, 422, "invalid_request")
    assert f"lm_weight needs decoder lm, not {decoder}" in body["error"]["message"]
    assert body["error"]["details"][0]["loc"] == ["lm_weight"]
    ok = client.post("/v1/recognize", json={"images": [{"data": b64(PNG_1)}], "decoder": "lm", "lm_weight": 0.5})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("value,status", [(True, 422), (5.0, 422), ("5", 422), (False, 422), (5, 200)])
def test_beam_width_is_a_strict_integer(client: TestClient, value: Any, status: int) -> None:
    # Issue 36, item 12: true was read as beam width 1 (and 5.0, "5" as 5).
    r = client.post("/v1/recognize", json={"images": [{"data": b64(PNG_1)}], "decoder": "beam", "beam_width": value})
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json()["error"]["details"][0]["loc"] == ["beam_width"]


@pytest.mark.parametrize("value,status", [("5", 200), (" 7 ", 200), ("true", 422), ("5.0", 422), ("1" * 30, 422)])
def test_multipart_beam_width_is_an_integer_written_in_digits(client: TestClient, value: str, status: int) -> None:
    r = client.post("/v1/recognize", files=files([("x.png", PNG_1)]), data={"decoder": "beam", "beam_width": value})
    assert r.status_code == status, r.text


def test_repeated_lexicon_fields_are_bounded_together() -> None:
    # Each field was bounded (1 MiB), not their sum: 16 MiB of lines were split into words on the event loop.
    from crnn_server.parsing import MAX_FIELD_BYTES

    field = "\n".join(["word"] * (MAX_FIELD_BYTES // 10))
    with make_client(max_body_bytes=8 * MAX_FIELD_BYTES) as c:
        r = c.post("/v1/recognize", files=files([("x.png", PNG_1)]) + [("lexicon", (None, field))] * 3)
    assert "lexicon fields are over" in assert_error(r, 422, "invalid_request")["error"]["message"]


# ---- heavy requests: off the event loop, bounded (issue 36, item 5) -------------------------------


def heavy_json(body: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments posting ``body`` as JSON over LIGHT_BODY_BYTES (padded with whitespace): a heavy request."""
    from crnn_server.parsing import LIGHT_BODY_BYTES

    return {"content": json.dumps(body).encode() + b" " * (LIGHT_BODY_BYTES + 1),
            "headers": {"Content-Type": "application/json"}}


def record_threads(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Record the thread names that build Lexicons and parse JSON bodies in the server."""
    import threading

    import crnn_server.engine
    import crnn_server.parsing

    seen: dict[str, list[str]] = {"lexicon": [], "json": []}
    real_lexicon, real_json = crnn_server.engine.Lexicon, crnn_server.parsing._json_request

    class Recorded(real_lexicon):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen["lexicon"].append(threading.current_thread().name)
            super().__init__(*args, **kwargs)

    def json_request(*args: Any) -> Any:
        seen["json"].append(threading.current_thread().name)
        return real_json(*args)

    monkeypatch.setattr(crnn_server.engine, "Lexicon", Recorded)
    monkeypatch.setattr(crnn_server.parsing, "_json_request", json_request)
    return seen


@pytest.mark.parametrize("kind", ["multipart", "json", "json-per-image", "heavy-json"])
def test_lexicons_are_built_off_the_event_loop(monkeypatch: pytest.MonkeyPatch, images: dict[str, bytes],
                                                kind: str) -> None:
    seen = record_threads(monkeypatch)
    body = {"images": [{"data": b64(images["hello"]), "lexicon": ["hello", "help"]}, {"data": b64(images["a"])}],
            "lexicon": ["a", "an"]}
    with make_client() as c:
        if kind == "multipart":
            r = c.post("/v1/recognize", files=files([("h", images["hello"])]), data={"lexicon": "hello\nhelp"})
        elif kind == "json":
            r = c.post("/v1/recognize", json={**body, "images": body["images"][1:]})
        elif kind == "json-per-image":
            r = c.post("/v1/recognize", json=body)
        else:
            r = c.post("/v1/recognize", **heavy_json(body))
    assert r.status_code == 200, r.text
    assert seen["lexicon"] and all(name.startswith("crnn-lexicon") for name in seen["lexicon"]), seen
    if kind == "heavy-json":
        assert seen["json"] and all(name.startswith("crnn-lexicon") for name in seen["json"]), seen


def test_healthz_answers_while_a_heavy_request_builds_its_lexicons(monkeypatch: pytest.MonkeyPatch,
                                                                    images: dict[str, bytes]) -> None:
    # One such request (64 lists of 10,000 words) held /healthz for 0.84 s: the lexicons were built on the event loop.
    import asyncio
    import threading

    import httpx

    from crnn_server.engine import Engine

    building, release = threading.Event(), threading.Event()
    state = {"built": False}
    real = Engine.build_lexicons

    def slow_build(self: Engine, *args: Any) -> Any:
        building.set()
        release.wait(10)  # the test releases it once /healthz has answered (if the loop is free to answer it)
        state["built"] = True
        return real(self, *args)

    monkeypatch.setattr(Engine, "build_lexicons", slow_build)
    app = create_app(Settings(**LIMITS), tiny_recognizer(), model_name="tiny")
    body = {"images": [{"data": b64(images["hello"]), "lexicon": ["hello", "help"]}]}

    async def main() -> tuple[int, bool, httpx.Response]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                heavy = asyncio.ensure_future(c.post("/v1/recognize", **heavy_json(body)))
                assert await asyncio.to_thread(building.wait, 10)
                health = await c.get("/healthz")
                built_before_health = state["built"]
                release.set()
                return health.status_code, built_before_health, await heavy

    status, built_before_health, r = asyncio.run(main())
    assert status == 200 and not built_before_health  # answered while the lexicons were still being built
    assert r.status_code == 200 and r.json()["results"][0]["in_lexicon"] is not None


@pytest.mark.parametrize("heavy", [False, True])
def test_a_request_over_the_lexicon_word_budget_gets_413(images: dict[str, bytes], heavy: bool) -> None:
    # 3 images x 30 words: each list within max_lexicon_words (50), 90 in all over the budget of 60.
    words = [f"w{i}" for i in range(30)]
    body = {"images": [{"data": b64(images["a"]), "lexicon": words}] * 3}
    with make_client(max_request_lexicon_words=60) as c:
        r = c.post("/v1/recognize", **heavy_json(body)) if heavy else c.post("/v1/recognize", json=body)
        within = c.post("/v1/recognize", json={"images": body["images"][:2]})
    error = assert_error(r, 413, "lexicon_too_large")["error"]
    assert "over 60 words" in error["message"] and error["details"] == {"limit_words": 60}
    assert within.status_code == 200, within.text


def test_built_lexicons_leave_nothing_for_the_garbage_collector_to_walk() -> None:
    # 64 lexicons of 10,000 words made every full collection of the server walk 640,000 more lists (0.2-0.6 s each,
    # holding the GIL and so the event loop); tuples of strings leave the collector's books at their first collection.
    import gc

    from crnn.decoding.lexicon import Lexicon

    lexicon = Lexicon([f"w{i}" for i in range(1000)] + ["Ok", "OK", "ok"], Charset())
    gc.collect()
    assert lexicon.spellings["ok"] == ("Ok", "OK", "ok")
    assert not any(gc.is_tracked(spellings) for spellings in lexicon.spellings.values())


def test_crnn_serve_freezes_its_start_up_heap() -> None:
    # The ~220,000 objects of a loaded server took 250 ms (GIL held) to walk at every full collection.
    import gc

    before = gc.get_freeze_count()
    try:
        with TestClient(create_app(Settings(**LIMITS), tiny_recognizer(), model_name="tiny", freeze_heap=True)) as c:
            assert c.get("/healthz").status_code == 200
            assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


# Bodies whose validation in pieces (a heavy request's) must answer exactly as validation of the whole body does.
PIECE_BODIES = [
    b'{"images": [{"data": "QUJD"}, {"data": "QUJD", "lexicon": ["a", "b"]}], "decoder": "greedy"}',
    b'{"decoder": "beam", "images": [{"data": "QUJD", "name": "n"}], "beam_width": 3, "lexicon": ["x"]}',
    b' \n{ "images" : [ ] } ',
    b'{"images": [{"data": "QUJD"}], "decoder": "viterbi"}',
    b'{"images": [{"data": "QUJD", "lexicon": [1]}, {"name": 2}], "beam_width": true}',
    b'{"images": [{"data": "QUJD"}, ], "decoder": "greedy"}',
    b'{"images": [{"data": "QUJD"} {"data": "QUJD"}]}',
    b'{"images": [{"data": "QUJD"}]} trailing',
    b'{"images": [{"data": "QUJD"}], "images": []}',
    b'{"images": [{"data": "QUJD", "name": "\\ud800"}]}',
    b'{"images": [{"data": "QUJD", "x": NaN}]}',
    b'{"images": [{"data": "QUJD"}], "lm_weight": 1e999, "decoder": "lm"}',
    b'{"images": [{"data": "QUJD", "lexicon": [' + b'[' * 5000 + b']' * 5000 + b']}]}',
    b'{"images": [{"data": "QUJD"}], "beam_width": ' + b'9' * 5000 + b'}',
    b'{"imag\\u0065s": [{"data": "QUJD"}]}',
    b'{"images": {"data": "QUJD"}}',
    b'{"images": [{"data": "QUJD"}], "x": }',
    b'\xff{"images": []}',
    b'[{"images": []}]',
    b'{"images": [{"data": "QUJD"}]',
]


@pytest.mark.parametrize("body", PIECE_BODIES)
def test_json_validated_in_pieces_answers_as_validated_whole(body: bytes) -> None:
    assert_same_parse(body)


@pytest.mark.parametrize("body,code", [
    (b'{"images": [{"data": "QUJD"}, {"data": "QUJD"}, {"data": "QUJD"}, {"x": 1}]}', "too_many_images"),
    (b'{"images": [{"data": "QUJD", "lexicon": ["a", "b"]}, {"data": "QUJD", "lexicon": ["c", "d"]}, {"x": 1}]}', "lexicon_too_large"),
])
def test_json_in_pieces_refuses_limits_before_validating_the_rest(body: bytes, code: str) -> None:
    from crnn_server.errors import APIError
    from crnn_server.parsing import _json_request

    settings = Settings(**{**LIMITS, "max_images": 3, "max_request_lexicon_words": 3})
    with pytest.raises(APIError) as e:
        _json_request(body, settings, True)
    assert e.value.code == code
    assert_same_parse(body, max_images=3, max_request_lexicon_words=3)


def assert_same_parse(body: bytes, **limits: Any) -> None:
    """_json_request gives the same result, or raises the same error, in pieces as whole; in pieces, too many images
    or lexicon words may be refused first (413), where whole validation refuses the body for another reason."""
    from crnn_server.errors import APIError
    from crnn_server.parsing import _json_request

    settings = Settings(**{**LIMITS, **limits})
    outcomes = []
    for pieces in (False, True):
        try:
            parsed = _json_request(body, settings, pieces)
            outcomes.append(("ok", parsed.options.model_dump(), [vars(img) for img in parsed.images]))
        except APIError as e:
            locs = [d["loc"] for d in e.details] if isinstance(e.details, list) else e.details
            outcomes.append((e.status, e.code, sorted(map(str, locs)) if isinstance(locs, list) else locs))
    whole, pieces = outcomes
    if pieces[:2] in ((413, "too_many_images"), (413, "lexicon_too_large")) and whole[0] != "ok":
        return
    assert whole == pieces, body[:200]


# ---- refused requests ----------------------------------------------------------------------------

PNG_1 = png(render_word("x"))
BOUNDARY = "b0undary"


def multipart_raw(body: bytes, boundary: str | None = BOUNDARY) -> dict[str, Any]:
    ctype = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
    return {"content": body, "headers": {"Content-Type": ctype}}


PART = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.png\"\r\n"
        "Content-Type: image/png\r\n\r\n").encode() + PNG_1 + b"\r\n"

BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("no-body", {}, 400, "empty_request"),
    ("zero-length-json", {"content": b"", "headers": {"Content-Type": "application/json"}}, 400, "empty_request"),
    ("text-plain", {"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
    ("no-content-type", {"content": PNG_1}, 415, "unsupported_media_type"),
    ("urlencoded", {"data": {"files": "x"}}, 415, "unsupported_media_type"),
    ("raw-png", {"content": PNG_1, "headers": {"Content-Type": "image/png"}}, 415, "unsupported_media_type"),
    ("multipart-no-boundary", multipart_raw(PART, boundary=None), 400, "malformed_body"),
    ("multipart-truncated", multipart_raw(PART), 400, "malformed_body"),
    ("multipart-garbage", multipart_raw(b"\x00\xff garbage without boundaries"), 400, "malformed_body"),
    ("multipart-only-options", {"files": [("decoder", (None, "greedy"))]}, 422, "no_images"),
    ("multipart-unknown-field", {"files": [("file", ("x.png", PNG_1, "image/png"))]}, 422, "invalid_request"),
    ("multipart-bad-decoder", {"files": [("files", ("x.png", PNG_1))], "data": {"decoder": "viterbi"}}, 422, "invalid_request"),
    ("multipart-negative-lm-weight", {"files": [("files", ("x.png", PNG_1))], "data": {"decoder": "lm", "lm_weight": "-1"}}, 422, "invalid_request"),
    ("multipart-beam-zero", {"files": [("files", ("x.png", PNG_1))], "data": {"beam_width": "0"}}, 422, "invalid_request"),
    ("multipart-beam-text", {"files": [("files", ("x.png", PNG_1))], "data": {"beam_width": "wide"}}, 422, "invalid_request"),
    ("multipart-beam-over-limit", {"files": [("files", ("x.png", PNG_1))], "data": {"beam_width": "21"}}, 422, "invalid_request"),
    ("multipart-repeated-option", {"files": [("files", ("x.png", PNG_1)), ("decoder", (None, "beam")), ("decoder", (None, "greedy"))]}, 422, "invalid_request"),
    ("multipart-lexicon-unusable", {"files": [("files", ("x.png", PNG_1))], "data": {"lexicon": "\u00e9\u00e9\n\u20ac"}}, 422, "invalid_request"),
    ("multipart-too-many", {"files": [("files", (f"{i}.png", PNG_1)) for i in range(5)]}, 413, "too_many_images"),
    ("json-invalid", {"content": b'{"images": [', "headers": {"Content-Type": "application/json"}}, 400, "malformed_body"),
    ("json-no-images-key", {"json": {"decoder": "greedy"}}, 422, "invalid_request"),
    ("json-empty-images", {"json": {"images": []}}, 422, "no_images"),
    ("json-images-not-list", {"json": {"images": "abc"}}, 422, "invalid_request"),
    ("json-image-without-data", {"json": {"images": [{"name": "x"}]}}, 422, "invalid_request"),
    ("json-unknown-key", {"json": {"images": [{"data": b64(PNG_1)}], "decoderr": "beam"}}, 422, "invalid_request"),
    ("json-not-object", {"json": [1, 2, 3]}, 422, "invalid_request"),
    ("json-bad-decoder", {"json": {"images": [{"data": b64(PNG_1)}], "decoder": 3}}, 422, "invalid_request"),
    ("json-beam-float", {"json": {"images": [{"data": b64(PNG_1)}], "beam_width": 2.5}}, 422, "invalid_request"),
    ("json-lexicon-not-strings", {"json": {"images": [{"data": b64(PNG_1)}], "lexicon": [1, 2]}}, 422, "invalid_request"),
    ("json-lexicon-empty", {"json": {"images": [{"data": b64(PNG_1)}], "lexicon": []}}, 422, "invalid_request"),
    ("json-lexicon-too-long", {"json": {"images": [{"data": b64(PNG_1)}], "lexicon": ["w"] * 51}}, 422, "invalid_request"),
    ("json-image-lexicon-too-long", {"json": {"images": [{"data": b64(PNG_1), "lexicon": ["w"] * 51}]}}, 422, "invalid_request"),
    ("json-image-lexicon-empty", {"json": {"images": [{"data": b64(PNG_1), "lexicon": []}]}}, 422, "invalid_request"),
    ("json-image-lexicon-not-strings", {"json": {"images": [{"data": b64(PNG_1), "lexicon": [3]}]}}, 422, "invalid_request"),
    ("json-image-lexicon-charset", {"json": {"images": [{"data": b64(PNG_1), "lexicon": ["ok", "caf\u00e9"]}]}}, 422, "invalid_request"),
    ("json-image-lexicon-long-word", {"json": {"images": [{"data": b64(PNG_1), "lexicon": ["w" * 257]}]}}, 422, "invalid_request"),
    ("json-too-many", {"json": {"images": [{"data": b64(PNG_1)}] * 5}}, 413, "too_many_images"),
    # Issue 36, item 12: a blank word, lm_weight without the lm decoder, a beam width that is not an integer.
    ("json-lexicon-blank-word", {"json": {"images": [{"data": b64(PNG_1)}], "lexicon": ["ok", "  "]}}, 422, "invalid_request"),
    ("json-image-lexicon-blank-word", {"json": {"images": [{"data": b64(PNG_1), "lexicon": ["ok", "\t"]}]}}, 422, "invalid_request"),
    ("json-image-lexicon-empty-word", {"json": {"images": [{"data": b64(PNG_1), "lexicon": [""]}]}}, 422, "invalid_request"),
    ("json-lm-weight-greedy", {"json": {"images": [{"data": b64(PNG_1)}], "decoder": "greedy", "lm_weight": 0.5}}, 422, "invalid_request"),
    ("json-lm-weight-beam", {"json": {"images": [{"data": b64(PNG_1)}], "decoder": "beam", "lm_weight": 0.5}}, 422, "invalid_request"),
    ("json-lm-weight-true", {"json": {"images": [{"data": b64(PNG_1)}], "decoder": "lm", "lm_weight": True}}, 422, "invalid_request"),
    ("json-beam-true", {"json": {"images": [{"data": b64(PNG_1)}], "beam_width": True}}, 422, "invalid_request"),
    ("json-beam-string", {"json": {"images": [{"data": b64(PNG_1)}], "beam_width": "5"}}, 422, "invalid_request"),
    ("json-beam-integral-float", {"json": {"images": [{"data": b64(PNG_1)}], "beam_width": 5.0}}, 422, "invalid_request"),
    ("multipart-lm-weight-greedy", {"files": [("files", ("x.png", PNG_1))], "data": {"decoder": "greedy", "lm_weight": "0.5"}}, 422, "invalid_request"),
    ("multipart-beam-true", {"files": [("files", ("x.png", PNG_1))], "data": {"beam_width": "true"}}, 422, "invalid_request"),
    ("multipart-lm-weight-text", {"files": [("files", ("x.png", PNG_1))], "data": {"lm_weight": "heavy"}}, 422, "invalid_request"),
    ("too-large", {"json": {"images": [{"data": "A" * 300_000}]}}, 413, "payload_too_large"),
]


@pytest.mark.parametrize("kwargs,status,code", [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_typed_4xx(client: TestClient, kwargs: dict[str, Any], status: int, code: str) -> None:
    body = assert_error(client.post("/v1/recognize", **kwargs), status, code)
    if code in ("invalid_request", "malformed_body") and "details" in body["error"]:
        assert isinstance(body["error"]["details"], list)


def test_chunked_body_over_the_limit_is_cut_off(client: TestClient) -> None:
    chunks = iter([b'{"images": [{"data": "'] + [b"A" * 50_000] * 10 + [b'"}]}'])
    assert_error(client.post("/v1/recognize", content=chunks, headers={"Content-Type": "application/json"}),
                 413, "payload_too_large")


def run_asgi(app: Any, headers: list[tuple[bytes, bytes]], chunks: list[bytes], complete: bool = True) -> tuple[int, int]:
    """Drive the ASGI app directly: (status, how many body chunks it pulled); not ``complete``: the client leaves."""
    import asyncio

    pulled = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks) or not complete}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/recognize", "raw_path": b"/v1/recognize", "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    return status, pulled


def test_body_limit_is_enforced_while_reading() -> None:
    with make_client() as c:
        app = c.app
        ctype = (b"content-type", b"application/json")
        # Declared too large: refused from the header without reading any of the body.
        status, pulled = run_asgi(app, [ctype, (b"content-length", b"10000000")], [b"x" * 1000] * 3)
        assert (status, pulled) == (413, 0)
        # Undeclared (chunked): refused as soon as the running total passes the limit, not at the end.
        status, pulled = run_asgi(app, [ctype], [b"x" * 50_000] * 100)
        assert status == 413 and pulled == 5


def test_client_leaving_mid_body_is_not_a_server_error() -> None:
    with make_client() as c:
        ctype = (b"content-type", b"multipart/form-data; boundary=" + BOUNDARY.encode())
        status, _ = run_asgi(c.app, [ctype], [PART], complete=False)
        assert status == 0  # nobody left to answer
        text = c.get("/metrics").text
    assert 'crnn_http_requests_total{method="POST",route="/v1/recognize",status="499"} 1.0' in text
    assert 'status="500"' not in text


@pytest.mark.parametrize("method,path,status,code", [
    ("GET", "/v1/recognize", 405, "method_not_allowed"),
    ("GET", "/nowhere", 404, "not_found"),
    ("POST", "/healthz", 405, "method_not_allowed"),
])
def test_routing_errors_are_typed(client: TestClient, method: str, path: str, status: int, code: str) -> None:
    assert_error(client.request(method, path), status, code)


def test_server_failure_is_a_typed_500(images: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("model exploded")

    monkeypatch.setattr(Recognizer, "recognize_prepared", broken)
    with make_client() as c:
        body = assert_error(c.post("/v1/recognize", files=files([("h", images["hello"])])), 500, "internal_error")
        assert "exploded" not in body["error"]["message"]  # internals stay in the logs
        assert c.get("/readyz").status_code == 200  # the batcher survives a failed batch


# ---- security, CORS, request ids, logs ------------------------------------------------------------


@pytest.mark.parametrize("headers,status", [({}, 401), ({API_KEY_HEADER: "wrong"}, 401),
                                            ({API_KEY_HEADER: ""}, 401), ({API_KEY_HEADER: "s3cret"}, 200)])
def test_api_key(images: dict[str, bytes], headers: dict[str, str], status: int,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    monkeypatch.setenv("CRNN_API_KEY", "s3cret")
    with TestClient(create_app(Settings.from_env(**LIMITS), tiny_recognizer())) as c:
        r = c.post("/v1/recognize", files=files([("h", images["hello"])]), headers=headers)
        assert r.status_code == status
        if status == 401:
            assert_error(r, 401, "unauthorized")
        assert c.get("/v1/model", headers=headers).status_code == status
        # Probes, metrics and the page stay open (the page asks for the key itself).
        assert [c.get(p).status_code for p in ("/healthz", "/readyz", "/metrics", "/")] == [200] * 4
    if headers.get(API_KEY_HEADER):
        assert calls, "keys must be compared with hmac.compare_digest"


def test_cors_origins(images: dict[str, bytes]) -> None:
    with make_client(cors_origins=("https://app.example",)) as c:
        r = c.post("/v1/recognize", files=files([("h", images["hello"])]), headers={"Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
        pre = c.options("/v1/recognize", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "X-API-Key"})
        assert pre.status_code == 200 and "x-api-key" in pre.headers["access-control-allow-headers"].lower()
        other = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        # Errors written by the middleware (413) still carry CORS headers so browsers can read them.
        big = c.post("/v1/recognize", content=b"x" * 300_000, headers={"Origin": "https://app.example",
                                                                        "Content-Type": "application/json"})
        assert big.status_code == 413 and big.headers["access-control-allow-origin"] == "https://app.example"


@pytest.mark.parametrize("given,echoed", [("abc-123", True), ("bad id with spaces", False), ("x" * 200, False), (None, False)])
def test_request_id_and_access_log(client: TestClient, caplog: pytest.LogCaptureFixture,
                                   given: str | None, echoed: bool) -> None:
    caplog.set_level(logging.INFO, logger="crnn.server.access")
    r = client.get("/healthz", headers={"X-Request-ID": given} if given else {})
    rid = r.headers["x-request-id"]
    assert (rid == given) is echoed and len(rid) <= 128 and " " not in rid
    records = [rec for rec in caplog.records if rec.name == "crnn.server.access"]
    assert records, "no access log line"
    from crnn_server.logs import JsonFormatter

    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == rid
    assert (line["method"], line["path"], line["route"], line["status"]) == ("GET", "/healthz", "/healthz", 200)
    assert line["duration_ms"] >= 0 and "\n" not in JsonFormatter().format(records[-1])


# ---- ops endpoints -------------------------------------------------------------------------------


def test_health_ready_and_model(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model"] == "tiny"
    info = client.get("/v1/model").json()
    assert info["name"] == "tiny"
    assert info["architecture"]["backbone"] == "small" and info["architecture"]["hidden_size"] == 16
    assert info["charset"] == Charset().chars and info["num_classes"] == len(Charset().chars) + 1
    assert info["parameters"] > 0 and info["multiply_adds"] > 0
    assert info["metrics"] == {} and info["server"]["max_images"] == 4
    assert info["preprocess"]["max_pixels"] == 1_000_000  # the server's tighter limit


def test_not_ready_before_startup(images: dict[str, bytes]) -> None:
    c = make_client()  # not entered: the lifespan (model start-up) has not run
    assert c.get("/healthz").status_code == 200
    assert_error(c.get("/readyz"), 503, "not_ready")
    assert_error(c.post("/v1/recognize", files=files([("h", images["hello"])])), 503, "not_ready")


def test_metrics_text(images: dict[str, bytes]) -> None:
    with make_client() as c:
        c.post("/v1/recognize", files=files([("h", images["hello"]), ("bad", b"junk")]))
        c.post("/v1/recognize", content=b"x", headers={"Content-Type": "text/plain"})
        c.get("/nowhere")
        c.post("/v1/recognize", content=b"x" * 300_000, headers={"Content-Type": "application/json"})
        text = c.get("/metrics").text
    assert 'crnn_http_requests_total{method="POST",route="/v1/recognize",status="200"} 1.0' in text
    assert 'crnn_http_requests_total{method="POST",route="/v1/recognize",status="415"} 1.0' in text
    assert 'crnn_http_errors_total{code="unsupported_media_type",route="/v1/recognize",status="415"} 1.0' in text
    assert 'crnn_http_errors_total{code="not_found",route="<unmatched>",status="404"} 1.0' in text
    assert 'crnn_http_errors_total{code="payload_too_large",route="/v1/recognize",status="413"} 1.0' in text
    assert 'crnn_http_request_duration_seconds_count{route="/v1/recognize"} 3.0' in text
    assert 'crnn_images_total{outcome="ok"} 1.0' in text and 'crnn_images_total{outcome="error"} 1.0' in text
    assert "crnn_batch_size_count 1.0" in text and "crnn_batch_size_sum 1.0" in text
    assert "crnn_queue_depth 0.0" in text and "crnn_model_loaded 1.0" in text


def test_openapi_and_docs(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/recognize"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert {"RecognizeJSON", "ImageIn", "RecognizeResponse", "ErrorResponse"} <= set(spec["components"]["schemas"])
    # Per-image lexicons are in the schema, and results may say whether their text is a lexicon word.
    assert "lexicon" in spec["components"]["schemas"]["ImageIn"]["properties"]
    assert "in_lexicon" in spec["components"]["schemas"]["ImageResult"]["properties"]
    assert {"/healthz", "/readyz", "/metrics", "/v1/model"} <= set(spec["paths"])
    responses = spec["paths"]["/v1/recognize"]["post"]["responses"]
    assert {"200", "400", "401", "413", "415", "422", "503"} <= set(responses)


@pytest.mark.parametrize("root_path", ["", "/ocr"])
def test_docs_page_is_served_from_the_package(root_path: str) -> None:
    # Every link of /docs points into the server (under a proxy's root path), none to a CDN.
    import re

    app = create_app(Settings(**LIMITS), tiny_recognizer(), model_name="tiny")
    with TestClient(app, root_path=root_path) as c:
        html = c.get("/docs").text
        links = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
        assert links and all(link.startswith(f"{root_path}/") for link in links), links
        assert f"{root_path}/docs-assets/swagger-ui-bundle.js" in links and f"{root_path}/openapi.json" in links
        assert '"validatorUrl": null' in html  # else Swagger UI calls validator.swagger.io
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
            r = c.get(f"{root_path}/docs-assets/{asset}")  # the path the browser asks for
            assert r.status_code == 200 and len(r.content) > 1000, asset


def test_index_page(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="files"' in r.text and "v1/recognize" in r.text and 'type="file"' in r.text


# ---- hardening (issue 16, item 3) ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_on_health_and_readiness(client: TestClient, path: str) -> None:
    r = client.head(path)
    assert r.status_code == 200 and r.content == b""


def test_docs_routes_are_labelled_in_metrics() -> None:
    with make_client() as c:
        for path in ("/docs", "/openapi.json", "/docs-assets/swagger-ui.css"):
            assert c.get(path).status_code == 200, path
        text = c.get("/metrics").text
    for route in ("/docs", "/openapi.json", "/docs-assets"):
        assert f'crnn_http_requests_total{{method="GET",route="{route}",status="200"}} 1.0' in text, route
    assert "<unmatched>" not in text


def test_model_info_shows_the_weights_file_name_only(tmp_path: Any) -> None:
    from tests.tiny_models import tiny_checkpoint

    path = tiny_checkpoint(tmp_path / "secret-dir" / "tiny.safetensors")
    with TestClient(create_app(Settings(**LIMITS, weights=str(path)))) as c:
        assert c.get("/v1/model").json()["weights"] == "tiny.safetensors"


def test_disallowed_cors_preflight_is_json(client: TestClient) -> None:
    with make_client(cors_origins=("https://app.example",)) as c:
        r = c.options("/v1/recognize", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "cors_refused" and "origin" in r.json()["error"]["message"].lower()


def test_lab_tiff_is_read_without_a_decoder_warning(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    word = render_word("hello")
    lab = Image.fromarray(np.dstack([word, np.full_like(word, 128), np.full_like(word, 128)]), mode="LAB")
    buf = io.BytesIO()
    lab.save(buf, "TIFF")
    caplog.set_level(logging.WARNING, logger="crnn.server")
    r = client.post("/v1/recognize", files=[("files", ("lab.tif", buf.getvalue(), "image/tiff"))])
    assert r.status_code == 200 and "text" in r.json()["results"][0], r.text
    assert not [rec for rec in caplog.records if rec.name == "crnn.server" and rec.levelno >= logging.WARNING]


@pytest.mark.parametrize("data", [b"not an image", png(np.zeros((2, 2), np.uint8))], ids=["text", "2x2"])
def test_image_errors_carry_no_type_prefix(client: TestClient, data: bytes) -> None:
    error = client.post("/v1/recognize", files=files([("x.png", data)])).json()["results"][0]["error"]
    assert not error.lower().startswith(("bytes", "image bytes", "ndarray", "array", "image:")), error


def test_a_request_cancelled_at_the_end_of_the_grace_period_gets_json_503() -> None:
    # uvicorn cancels the requests still running when the SIGTERM grace period ends (a stalled upload).
    import asyncio

    from crnn_server.metrics import Metrics
    from crnn_server.middleware import ObservabilityMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # the body never comes

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def never() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def run() -> None:
        mw = ObservabilityMiddleware(app, Metrics(), max_body_bytes=100, access_log=False)
        scope = {"type": "http", "method": "POST", "path": "/v1/recognize", "headers": []}
        task = asyncio.ensure_future(mw(scope, never, send))
        await asyncio.sleep(0.01)
        task.cancel()
        await task  # answered, not re-raised: uvicorn would otherwise write a plain-text 500

    asyncio.run(run())
    assert sent[0]["status"] == 503 and (b"content-type", b"application/json") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "not_ready"


@pytest.mark.parametrize("protocol", ["JSONH11Protocol", "JSONHttpToolsProtocol"])
def test_requests_the_http_parser_refuses_are_answered_as_json(protocol: str) -> None:
    from types import SimpleNamespace

    from crnn_server import protocols

    cls = getattr(protocols, protocol, None)
    if cls is None:
        pytest.skip("httptools not installed")
    written: list[bytes] = []
    fake = SimpleNamespace(server_state=SimpleNamespace(default_headers=[(b"server", b"uvicorn")]),
                           transport=SimpleNamespace(write=written.append, close=lambda: None))
    cls.send_400_response(fake, "Invalid HTTP request received.")
    head, body = b"".join(written).split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head
    assert json.loads(body)["error"] == {"code": "bad_request", "message": "Invalid HTTP request received."}


# Shipped models by name (issue 32 item 3): a server serves one model, chosen at start (`crnn serve --model NAME`);
# a request may name it (`model`), and a name it does not serve is refused, never read by another model.
@pytest.mark.parametrize("form", ["json", "multipart"])
@pytest.mark.parametrize(("served", "asked", "status", "fragment"), [
    ("real", None, 200, None),
    ("real", "real", 200, None),
    ("real", "default", 422, "model 'default' is not loaded by this server; it serves the shipped model 'real'"),
    ("real", "nope", 422, "the shipped models are: default, default-int8, real, real-int8"),
    (None, "default", 422, "it serves weights of its own"),  # a recognizer (or --weights) of its own
])
def test_a_request_may_name_the_served_model(form: str, served: str | None, asked: str | None, status: int,
                                             fragment: str | None) -> None:
    with make_client(model=served) as c:
        assert c.get("/v1/model").json()["shipped_model"] == served
        options = {} if asked is None else {"model": asked}
        if form == "json":
            r = c.post("/v1/recognize", json={"images": [{"data": b64(PNG_1)}], **options})
        else:
            r = c.post("/v1/recognize", files=files([("x.png", PNG_1)]), data=options)
    if status == 200:
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["text"] == tiny_recognizer().recognize([PNG_1])[0].text
    else:
        body = assert_error(r, status, "model_not_loaded")
        assert fragment in body["error"]["message"] and body["error"]["details"]["model"] == asked


@pytest.mark.parametrize(("settings", "message"), [
    ({"model": "nope"}, "unknown model 'nope'; the shipped models are: default, default-int8, real, real-int8"),
    ({"model": "real", "weights": "my.safetensors"}, "--model real and --weights my.safetensors both choose"),
])
def test_settings_refuse_a_bad_model_choice(settings: dict[str, Any], message: str) -> None:
    from crnn.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        Settings(**settings)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_the_server_loads_a_shipped_model_by_name(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx")
    from crnn.checkpoints import shipped
    from crnn.kinds.export import export_onnx
    from tests.tiny_models import tiny_checkpoint

    tiny_checkpoint(tmp_path / "crnn-real.safetensors", seed=3)
    export_onnx(tmp_path / "crnn-real.safetensors", tmp_path / "crnn-real.onnx")
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    settings = Settings(**{**LIMITS, "model": "real", "backend": backend})
    with TestClient(create_app(settings)) as c:
        info = c.get("/v1/model").json()
        r = c.post("/v1/recognize", json={"images": [{"data": b64(PNG_1)}], "decoder": "greedy", "model": "real"})
    assert info["shipped_model"] == "real" and info["name"] == "tiny-untrained"
    assert info["weights"] == ("crnn-real.onnx" if backend == "onnx" else "crnn-real.safetensors")
    expected = tiny_recognizer(seed=3).recognize([PNG_1], decoder="greedy")[0]
    assert r.status_code == 200 and r.json()["results"][0]["text"] == expected.text
