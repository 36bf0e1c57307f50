"""`crnn serve` as a user runs it: settings, the missing-weights error, and a real server process."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
import httpx

from crnn import Recognizer
from crnn.checkpoints.header import default_weights_path
from crnn.cli import main as crnn_main
from crnn.errors import ConfigError
from crnn.machine import cpu_cores
import crnn_server.cli
from crnn_server.cli import build_parser, main, settings_from_args
from crnn_server.settings import Settings
from tests.server_process import ServerProcess
from tests.test_server_api import png
from tests.tiny_models import BROKEN_ONNX, broken_onnx, tiny_checkpoint
from tests.word_images import render_word


def test_missing_weights_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--weights", str(tmp_path / "nope.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights file not found" in err and "nope.safetensors" in err
    # Without --weights the shipped path (or $CRNN_WEIGHTS) is used, and the message says how to choose.
    monkeypatch.setenv("CRNN_WEIGHTS", str(tmp_path / "shipped.safetensors"))
    assert crnn_main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shipped.safetensors" in err and "--weights FILE" in err


def test_not_a_checkpoint_and_bad_settings_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    assert main(["--weights", str(junk)]) == 2
    assert "not a crnn-ocr checkpoint" in capsys.readouterr().err
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    assert main(["--weights", str(ckpt), "--max-batch", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crnn serve: server config key 'max_batch': ")
    assert "greater than or equal to 1 (got 0)" in err
    assert main(["--weights", str(ckpt), "--max-queue", "10"]) == 2  # fewer than --max-images
    assert capsys.readouterr().err == "crnn serve: server config: max_queue (10) must be >= max_images (64)\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "nope"], "crnn serve: server config key 'model': unknown model 'nope'; the shipped models are: "
     "default, default-int8, real, real-int8"),
    (["--model", "real", "--weights", "x.safetensors"], "--model real and --weights x.safetensors both choose the model"),
    (["--model", "real"], "crnn serve: model 'real' is not shipped in this install: no crnn-real.safetensors in "),
])
def test_a_bad_model_name_is_one_clear_line(argv: list[str], message: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from crnn.checkpoints import shipped

    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)  # no model's file: `real` not shipped
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "--weights FILE" not in err


def test_serve_checks_a_shipped_model_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crnn.checkpoints import shipped

    tiny_checkpoint(tmp_path / "crnn-real.safetensors")
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    settings = settings_from_args(build_parser().parse_args(["--model", "real"]))
    assert settings.model == "real" and settings.model_source() == ("torch", tmp_path / "crnn-real.safetensors")
    assert Settings.from_json(settings.to_json()) == settings  # as the workers get it


def test_serve_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        crnn_main(["serve", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--weights", "--model", "--workers", "--max-batch", "--max-wait-ms", "--max-queue",
                 "--max-body-mb", "--max-images", "--max-pixels", "--cors-origins", "CRNN_API_KEY"):
        assert flag in out
    crnn_main(["--help"])
    assert "serve" in capsys.readouterr().out


def test_settings_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRNN_API_KEY", "s3cret-key")
    monkeypatch.setenv("CRNN_CORS_ORIGINS", "https://a.example, https://b.example")
    args = build_parser().parse_args(["--workers", "2", "--max-batch", "8", "--max-body-mb", "1.5"])
    s = settings_from_args(args)
    assert (s.api_key, s.cors_origins) == ("s3cret-key", ("https://a.example", "https://b.example"))
    assert s.workers == 2 and s.threads is not None and s.threads >= 1 and s.max_batch == 8
    assert 1 <= s.batch_workers * s.threads <= max(1, cpu_cores() // 2)  # the worker's share of cores
    assert s.max_body_bytes == int(1.5 * 1024 * 1024)
    assert Settings.from_json(s.to_json()) == s
    assert "s3cret-key" not in repr(s)  # the key stays out of logs and tracebacks
    args = build_parser().parse_args(["--cors-origins", "*"])
    assert settings_from_args(args).cors_origins == ("*",)


@pytest.mark.parametrize("threads,cores,expected", [(1, 2, 2), (1, 16, 16), (15, 16, 1), (4, 16, 4)])
def test_default_batch_workers_share_the_cores_with_the_threads(threads: int, cores: int, expected: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crnn_server.cli, "cpu_cores", lambda: cores)
    s = settings_from_args(build_parser().parse_args(["--threads", str(threads)]))
    assert (s.threads, s.batch_workers) == (threads, expected)
    s = settings_from_args(build_parser().parse_args(["--threads", str(threads), "--batch-workers", "3"]))
    assert s.batch_workers == 3


@pytest.mark.parametrize("field,value", [("max_batch", 0), ("max_wait_ms", -1), ("max_queue", 0), ("workers", 0),
                                         ("batch_workers", 0),
                                         ("queue_timeout_s", 0), ("max_images", 0), ("port", 70000),
                                         ("max_queue", 10)])  # fewer than max_images (64)
def test_invalid_settings(field: str, value: Any) -> None:
    with pytest.raises(ConfigError):
        Settings(**{field: value})


def test_empty_api_key_means_no_key() -> None:
    assert Settings.from_env({"CRNN_API_KEY": ""}).api_key is None
    assert Settings(api_key="").api_key is None


def test_settings_read_the_environment_only_through_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRNN_API_KEY", "k")
    monkeypatch.setenv("CRNN_CORS_ORIGINS", "https://a.example https://b.example")
    assert (Settings().api_key, Settings().cors_origins) == (None, ())
    s = Settings.from_env(port=9000, workers=None)  # None: not given, the default stays
    assert (s.api_key, s.cors_origins, s.port, s.workers) == ("k", ("https://a.example", "https://b.example"), 9000, 1)
    assert Settings.from_env({}, api_key="flag").api_key == "flag"  # flags win over the environment


def test_settings_json_round_trip_refuses_unknown_keys_and_bad_values() -> None:
    s = Settings(api_key="k", cors_origins=("*",), threads=2)
    assert json.loads(s.to_json())["cors_origins"] == ["*"] and Settings.from_json(s.to_json()) == s
    with pytest.raises(ConfigError, match="unknown server config key 'colour'"):
        Settings.from_json(json.dumps({**s.to_dict(), "colour": 1}))
    with pytest.raises(ConfigError, match="server config key 'port'"):
        Settings.from_json('{"port": "http"}')
    with pytest.raises(ConfigError, match="frozen"):
        s.port = 1  # type: ignore[misc]


@pytest.mark.slow
def test_real_server_reads_images_logs_and_drains_on_sigterm(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    words = ["serve", "the", "crnn", "model"]
    images = [png(render_word(w)) for w in words]
    expected = [p.text for p in Recognizer(ckpt).recognize(images)]
    # max_wait is long on purpose: a lone request sits in the batcher while SIGTERM arrives below.
    server = ServerProcess(["--weights", str(ckpt), "--max-batch", "4", "--max-wait-ms", "1500", "--threads", "1"])
    with server:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post("/v1/recognize", files=[("files", (f"{w}.png", img, "image/png")) for w, img in zip(words, images)],
                       headers={"X-Request-ID": "e2e-1"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model"] == "tiny-untrained"
            assert [res["text"] for res in body["results"]] == expected
            assert [res["name"] for res in body["results"]] == [f"{w}.png" for w in words]
            assert r.headers["x-request-id"] == "e2e-1"
            assert c.post("/v1/recognize", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
            assert c.get("/v1/model").json()["weights"] == ckpt.name  # no server paths in answers
            assert 'crnn_http_requests_total{method="POST",route="/v1/recognize",status="200"} 1.0' in c.get("/metrics").text

        # SIGTERM while a request is in flight: it still gets its answer, then the process exits cleanly.
        result: dict[str, Any] = {}

        def post() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                result["r"] = c.post("/v1/recognize", files=[("files", ("late.png", images[0], "image/png"))])

        t = threading.Thread(target=post)
        t.start()
        for _ in range(100):  # wait until the request is queued (the queue depth gauge says so)
            metrics = httpx.get(server.url + "/metrics").text
            if "crnn_queue_depth 1.0" in metrics:
                break
            threading.Event().wait(0.02)
        else:
            pytest.fail("the request never showed up in the queue")
        server.terminate()
        t.join(30)
        assert result["r"].status_code == 200 and result["r"].json()["results"][0]["text"] == expected[0]
        # uvicorn re-raises the captured SIGTERM once shutdown is complete, so -15 is a clean exit too.
        assert server.wait(30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete." in server.stderr()
        log = server.access_log()
        assert any(line["request_id"] == "e2e-1" and line["status"] == 200 and line["images"] == 4 for line in log)
        assert all({"request_id", "method", "path", "status", "duration_ms"} <= set(line) for line in log)
        assert "Shutting down" in server.stderr()
        for line in io.StringIO(server.stderr()):
            json.loads(line)  # every log line is JSON


@pytest.mark.slow
@pytest.mark.skipif(not default_weights_path().exists(), reason="the shipped weights are not in this checkout")
def test_shipped_model_reads_words_over_http() -> None:
    words = ["hello", "world", "server", "text"]
    # No --weights: the server must find the shipped model by itself.
    with ServerProcess(["--max-wait-ms", "1"]) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/v1/recognize", files=[("files", (f"{w}.png", png(render_word(w)), "image/png")) for w in words])
        assert r.status_code == 200, r.text
        texts = [res["text"] for res in r.json()["results"]]
        assert sum(t == w for t, w in zip(texts, words)) >= 3, texts
        info = c.get("/v1/model").json()
        assert info["weights"] == default_weights_path().name and info["metrics"]  # the file name only


def test_truncated_weights_are_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The header reads fine, the tensors do not: refused before uvicorn starts, as `crnn ocr` does.
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    data = ckpt.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 1000])
    assert main(["--weights", str(truncated)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crnn serve: ") and "truncated.safetensors" in err


@pytest.mark.parametrize("damage", BROKEN_ONNX)
def test_serve_refuses_an_onnx_model_that_cannot_run_in_one_line(damage: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The header reads fine; the graph does not parse, or does not output the charset's classes, or takes another
    # height: refused before uvicorn starts, as `crnn ocr` and `crnn info` refuse it.
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    uvicorn = pytest.importorskip("uvicorn")

    def run(*args: object, **kwargs: object) -> None:
        raise AssertionError("uvicorn started")
    monkeypatch.setattr(uvicorn, "run", run)
    path = broken_onnx(tmp_path, damage)
    for backend in ("onnx", "auto"):
        assert main(["--weights", str(path), "--backend", backend]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"crnn serve: {path}: "), err


def test_the_engine_never_reports_ready_with_an_onnx_model_that_cannot_run(tmp_path: Path) -> None:
    # What each worker does at start-up (behind the check above): the model is loaded and run once, or no start.
    import asyncio

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from crnn.errors import CheckpointError
    from crnn_server.engine import Engine
    from crnn_server.metrics import Metrics

    engine = Engine(Settings(weights=str(broken_onnx(tmp_path, "wrong-classes")), backend="onnx"), Metrics())
    with pytest.raises(CheckpointError, match="96 classes of the charset"):
        asyncio.run(engine.start())
    assert not engine.ready
    asyncio.run(engine.stop())


def test_a_server_whose_onnx_model_cannot_run_exits_2_and_never_answers(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = broken_onnx(tmp_path, "wrong-classes")
    server = ServerProcess(["--weights", str(path), "--backend", "onnx", "--threads", "1"], startup_timeout=60)
    try:
        with pytest.raises(RuntimeError, match="crnn serve exited with 2"):
            server.start()  # it would return once /readyz answered 200
        err = server.stderr()
        assert err.count("\n") == 1 and err.startswith(f"crnn serve: {path}: ") and "96 classes" in err, err
    finally:
        server.__exit__(None, None, None)


def _stalled_upload(port: int, sent: int = 100, declared: int = 10_000) -> socket.socket:
    """A raw connection that sends the headers and part of a body, then stalls."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {declared}\r\n\r\n".encode() + b"{" + b" " * (sent - 1))
    return s


def _response(s: socket.socket, timeout: float) -> tuple[int, dict[str, Any], float]:
    """Status and JSON body of the answer on ``s``, and the seconds it took."""
    started = time.monotonic()
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            re.search(rb"content-length: (\d+)", data, re.I).group(1)):  # type: ignore[union-attr]
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body), time.monotonic() - started


@pytest.mark.slow
def test_stalled_uploads_time_out_with_408_and_are_capped(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    with ServerProcess(["--weights", str(ckpt), "--threads", "1", "--body-timeout", "1.5", "--max-uploads", "2"]) as server:
        stalled = [_stalled_upload(server.port) for _ in range(2)]
        time.sleep(0.3)  # both are reading their bodies now
        status, body, _ = _response(_stalled_upload(server.port), timeout=5)
        assert (status, body["error"]["code"]) == (503, "overloaded")  # a third upload is refused at once
        for s in stalled:
            status, body, _ = _response(s, timeout=10)  # answered, not held for ever
            assert (status, body["error"]["code"]) == (408, "body_timeout")
            assert s.recv(1) == b""  # and the connection is closed
        # The slots are free again: a whole request is read.
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post("/v1/recognize", files=[("files", ("w.png", png(render_word("ok")), "image/png"))])
            assert r.status_code == 200, r.text
