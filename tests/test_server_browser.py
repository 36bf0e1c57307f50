"""The web page in a real headless Chromium: pick images through the page's file input, see the results.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe), which needs no
driver package. The tests skip when Debian's `chromium` is not installed. The browser has no network beyond
loopback (everything else goes to a proxy that is not there), as on an offline server, and every page's
requests are recorded: none may leave the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")

from crnn import Recognizer
from tests.server_process import ServerProcess, free_port
from tests.test_server_api import png
from tests.tiny_models import tiny_checkpoint
from tests.word_images import render_word

CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p), None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")]


class Chromium:
    """A headless Chromium and a minimal DevTools-protocol client over its pipe (fds 3 and 4)."""

    def __init__(self, executable: str) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="crnn-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes() -> None:
            # The protocol pipe must be fds 3 (browser reads) and 4 (browser writes) in the child.
            a, b = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             # No network beyond loopback: other hosts go through a proxy that is not there (loopback bypasses
             # proxies), so a page that needs the internet fails here as it would offline.
             "--proxy-server=http://127.0.0.1:9",
             f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=wire_pipes,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # protocol events (messages without an id), in arrival order
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._replies[-1] = {"error": {"message": "browser closed the pipe"}}
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    with self._cond:
                        self.events.append(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        """Call a protocol method and return its result (raises on a protocol error)."""
        self._next_id += 1
        msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._replies and -1 not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply to {method}")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id, None) or self._replies[-1]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        """Close the browser and its profile."""
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()


class Page:
    """One tab of the browser."""

    def __init__(self, browser: Chromium) -> None:
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Network.enable")

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"page never satisfied: {expression}")

    def requested_urls(self) -> list[str]:
        """Every URL this tab has asked for so far (documents, scripts, styles, images, fetches)."""
        with self.browser._cond:
            events = list(self.browser.events)
        return [e["params"]["request"]["url"] for e in events
                if e.get("sessionId") == self.session and e.get("method") == "Network.requestWillBeSent"]

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def set_files(self, selector: str, paths: list[str]) -> None:
        """Pick files in a file input, as a user does in the file dialog (fires input and change)."""
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        assert node, f"no element matches {selector}"
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": paths})

    def screenshot(self, path: Path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))


def off_machine(urls: list[str]) -> list[str]:
    """The URLs that would leave the machine (anything but loopback, data: and blob:)."""
    from urllib.parse import urlsplit

    return [u for u in urls if urlsplit(u).scheme not in ("data", "blob", "about")
            and urlsplit(u).hostname not in ("127.0.0.1", "localhost", "::1")]


READ_RESULTS = """[...document.querySelectorAll('#results .result')].map(li => ({
  name: li.querySelector('.name')?.textContent,
  text: li.querySelector('.text')?.dataset.text ?? null,
  confidence: li.querySelector('.confidence')?.textContent ?? null,
  error: li.querySelector('.err')?.textContent ?? null,
}))"""


def test_page_reads_picked_images_in_a_real_browser(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    word = png(render_word("browser"))
    (tmp_path / "word.png").write_bytes(word)
    (tmp_path / "broken.png").write_bytes(b"not really a png")
    expected = Recognizer(ckpt).recognize([word])[0]

    with ServerProcess(["--weights", str(ckpt), "--max-wait-ms", "1", "--threads", "1"]) as server:
        browser = Chromium(CHROMIUM)  # type: ignore[arg-type]
        try:
            page = Page(browser)
            page.goto(server.url + "/")
            assert page.evaluate("document.title") == "crnn-ocr"
            # The page asked /v1/model for the model's name on load.
            assert "tiny-untrained" in page.wait_for("document.getElementById('model').textContent")
            page.set_files("#files", [str(tmp_path / "word.png"), str(tmp_path / "broken.png")])
            page.wait_for("document.body.dataset.state === 'done'")
            results = page.evaluate(READ_RESULTS)
            status = page.evaluate("document.getElementById('status').textContent")
            if os.environ.get("CRNN_SCREENSHOT"):
                page.screenshot(Path(os.environ["CRNN_SCREENSHOT"]))
            urls = page.requested_urls()
        finally:
            browser.close()
        posts = [line for line in server.access_log() if line["path"] == "/v1/recognize"]

    assert [r["name"] for r in results] == ["word.png", "broken.png"]
    good, bad = results
    assert good["text"] == expected.text and good["error"] is None
    assert good["confidence"] == f"confidence {expected.confidence * 100:.1f}%"
    assert bad["text"] is None and "not an image" in bad["error"]
    assert "2 images read by tiny-untrained" in status
    assert len(posts) == 1 and posts[0]["status"] == 200 and posts[0]["images"] == 2
    assert any(u.endswith("/v1/recognize") for u in urls) and off_machine(urls) == []


# Swagger UI has rendered the operation POST /v1/recognize (its summary row carries the path).
RECOGNIZE_OPERATION = """document.querySelector('.opblock-post .opblock-summary-path[data-path="/v1/recognize"]') !== null"""


def test_docs_page_renders_offline_in_a_real_browser(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    with ServerProcess(["--weights", str(ckpt), "--threads", "1"]) as server:
        browser = Chromium(CHROMIUM)  # type: ignore[arg-type]
        try:
            page = Page(browser)
            page.goto(server.url + "/docs")
            assert page.wait_for(RECOGNIZE_OPERATION)
            title = page.evaluate("document.querySelector('.info .title')?.textContent ?? ''")
            urls = page.requested_urls()
        finally:
            browser.close()
    assert title.startswith("crnn-ocr")
    assert any(u.endswith("/docs-assets/swagger-ui-bundle.js") for u in urls)
    assert any(u.endswith("/openapi.json") for u in urls)
    assert off_machine(urls) == []


class InProcessServer:
    """An app served by uvicorn in a thread of this process on a free loopback port (so that a test can give it a
    fake detector, which a `crnn serve` process cannot take)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


# Each photo result as the page shows it: the overlay's boxes and labels, the word list, and where each box lies on
# the shown photo (its on-screen box relative to the photo's, as fractions).
READ_PHOTOS = """[...document.querySelectorAll('#results .result')].map(li => {
  const img = li.querySelector('.stage img'), svg = li.querySelector('.stage svg');
  const a = img ? img.getBoundingClientRect() : null, b = svg ? svg.getBoundingClientRect() : null;
  return {
    name: li.querySelector('.name')?.textContent,
    error: li.querySelector('.err')?.textContent ?? null,
    viewBox: svg?.getAttribute('viewBox') ?? null,
    overlayOnPhoto: a ? (a.width > 0 && ['left', 'top', 'width', 'height'].every(k => Math.abs(a[k] - b[k]) < 1)) : null,
    boxes: [...li.querySelectorAll('.stage polygon')].map(p => {
      const r = p.getBoundingClientRect();
      return {text: p.dataset.text, rel: [(r.left - a.left) / a.width, (r.top - a.top) / a.height,
                                          (r.right - a.left) / a.width, (r.bottom - a.top) / a.height]};
    }),
    labels: [...li.querySelectorAll('.stage text')].map(t => t.textContent),
    words: [...li.querySelectorAll('ol.words li')].map(w => w.dataset.text),
  };
})"""


def test_page_draws_the_words_of_a_photo_in_a_real_browser(tmp_path: Path) -> None:
    from crnn.kinds.loading import load_recognizer
    from crnn_server import Settings, create_app
    from tests.test_photo_reader import line_photo
    from tests.test_server_photo import WORDS, InkDetector, expected

    recognizer = load_recognizer(threads=1)
    image = line_photo(WORDS, height=48)[0]
    photo = png(image)
    (tmp_path / "photo.png").write_bytes(photo)
    (tmp_path / "broken.jpg").write_bytes(b"not really a jpeg")
    want = expected(recognizer, photo)
    assert [w["text"].upper() for w in want["words"]] == WORDS

    app = create_app(Settings(max_wait_ms=1.0, threads=1), recognizer, model_name="shipped", detector=InkDetector())
    with InProcessServer(app) as server:
        browser = Chromium(CHROMIUM)  # type: ignore[arg-type]
        try:
            page = Page(browser)
            page.goto(server.url + "/#photo")  # the photo mode, from the address
            assert page.evaluate("document.body.dataset.mode") == "photo"
            assert page.evaluate("document.querySelector('input[name=mode][value=photo]').checked") is True
            page.set_files("#files", [str(tmp_path / "photo.png"), str(tmp_path / "broken.jpg")])
            page.wait_for("document.body.dataset.state === 'done'")
            page.wait_for("[...document.querySelectorAll('.stage img')].every(i => i.complete && i.naturalWidth > 0)")
            shown = page.evaluate(READ_PHOTOS)
            status = page.evaluate("document.getElementById('status').textContent")
            if os.environ.get("CRNN_SCREENSHOT"):
                page.screenshot(Path(os.environ["CRNN_SCREENSHOT"]))
            # Back to word crops: the crop page as before.
            page.evaluate("document.querySelector('input[name=mode][value=crops]').click()")
            crops_mode = page.evaluate("[document.body.dataset.mode, location.hash, "
                                       "document.querySelectorAll('#results .result').length]")
            urls = page.requested_urls()
        finally:
            browser.close()

    good, bad = shown
    h, w = image.shape[:2]
    assert good["viewBox"] == f"0 0 {w} {h}" and good["overlayOnPhoto"] is True
    texts = [x["text"] for x in want["words"]]
    assert [b["text"] for b in good["boxes"]] == texts and good["labels"] == texts and good["words"] == texts
    for box, word in zip(good["boxes"], want["words"]):  # each box is drawn where its word is on the shown photo
        xs, ys = [p[0] for p in word["polygon"]], [p[1] for p in word["polygon"]]
        assert np.allclose(box["rel"], [min(xs) / w, min(ys) / h, max(xs) / w, max(ys) / h], atol=0.02), box
    assert good["name"].startswith("photo.png") and "2 words in 1 line" in good["name"]
    assert bad["error"] and "not an image" in bad["error"] and bad["boxes"] == []
    assert "2 photos read by shipped and ink" in status and "2 words" in status
    assert crops_mode == ["crops", "", 0]
    assert any(u.endswith("/v1/read") for u in urls) and off_machine(urls) == []
