"""``fashionzoo serve``: the real server (uvicorn, in a subprocess stopped by its pid) against ``predict --json`` on the
same photos, its models, health and OpenAPI document, every limit and bad upload (a 4xx or 503 in one line, and the
server still answers), and the page in a real headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
from browser import chromium_page
from helpers import CLI_ENV, ROOT, assert_cli_error, assert_one_line, free_port, run_cli, wait_for
from PIL import Image, ImageDraw

from fashionzoo.photos.decode import MAX_PIXELS
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.registry.lookup import all_entries
from fashionzoo.runtime.classifier import Classifier
from fashionzoo.runtime.results import saved_input_path

pytest.importorskip("fastapi", reason='the server is not installed (pip install "fashionzoo[serve]")')

from fashionzoo.server import app as server_app  # noqa: E402 (after the skip: it needs FastAPI)
from fashionzoo.server import schemas  # noqa: E402
from fashionzoo.server.app import Classifiers, servable  # noqa: E402
from fashionzoo.server.limits import ServerLimits  # noqa: E402
from fashionzoo.server.run import is_loopback  # noqa: E402

SHARED = ROOT.parent / "shared/data"
POOL = SHARED / "clothing-photos/images"
"""The CC0 clothing-photos pool: the photos the page test uploads (and its screenshot shows)."""
REAL_PHOTOS = SHARED / "real-photos"
SCREENSHOT = os.environ.get("FASHIONZOO_SCREENSHOT")
"""Where the page test also saves its screenshot (docs/img/serve-page.png for the docs), when set."""


PREDICT_JSON_FIELDS = {
    "file",
    "file_base64",
    "label",
    "class_id",
    "probability",
    "uncertain",
    "uncertain_reason",
    "top_k",
    "error",
}
"""Every field a ``predict --json`` line can carry (runtime/results.py): the API's ``Result`` has exactly these, and
``input_png``."""
THREE_GARMENTS = (
    "pants/fe0ae2fe-9910-4f3f-a7ab-3b6400c9e0b2.jpg",
    "t-shirt/c028daef-a24d-48b4-932c-3eb9df50015d.jpg",
    "pants/05e280ef-53d9-497f-be09-e83c549f0a14.jpg",
)
"""Three phone photos of the CC0 pool, composed side by side: a photo that ``predict`` marks ``uncertain_reason``."""


def three_garments(folder: Path) -> Path:
    """A photo of three separate garments (pants, a T-shirt, pants), saved in ``folder``."""
    composed = Image.new("RGB", (900, 400))
    for index, name in enumerate(THREE_GARMENTS):
        composed.paste(Image.open(POOL / name).convert("RGB").resize((300, 400)), (300 * index, 0))
    path = folder / "three-garments.jpg"
    composed.save(path, quality=92)
    return path


def photos() -> list[Path]:
    """A few real photos of every kind: the CC0 pool's phone photos, and the development set's studio and worn ones."""
    if not POOL.is_dir():
        pytest.skip(f"the shared clothing-photos pool is not at {POOL}")
    chosen = [sorted(folder.iterdir())[0] for folder in sorted(POOL.iterdir())[:6]]
    for domain in ("studio", "worn"):
        if (REAL_PHOTOS / domain).is_dir():
            chosen += [sorted(folder.iterdir())[0] for folder in sorted((REAL_PHOTOS / domain).iterdir())[:3]]
    return chosen


def healthy(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


@contextmanager
def serving(*options: str) -> Iterator[str]:
    """``fashionzoo serve OPTIONS`` on a free port of 127.0.0.1, until the block ends (stopped by its pid)."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fashionzoo", "serve", "--port", str(port), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CLI_ENV},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            started = wait_for(lambda: process.poll() is not None or healthy(url), timeout=120)
            log.seek(0)
            assert started and process.poll() is None, log.read()[-3000:]
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving() as url:
        yield url


def post(url: str, files: list[tuple[str, bytes]], timeout: float = 120, **query: Any) -> httpx2.Response:
    """``POST /v1/predict`` with ``files`` (name, content) as ``files`` parts."""
    parts = [("files", (name, content, "application/octet-stream")) for name, content in files]
    return httpx2.post(f"{url}/v1/predict", files=parts, params=query, timeout=timeout)


def uploads(paths: list[Path]) -> list[tuple[str, bytes]]:
    """Each file as an upload named by its full path, so that ``file`` reads as ``predict``'s."""
    return [(str(path), path.read_bytes()) for path in paths]


def predict_json(*args: str, cwd: Path | None = None) -> list[dict[str, Any]]:
    """``fashionzoo predict --json ARGS``' lines."""
    result = run_cli("predict", "--json", *args, cwd=cwd)
    return [json.loads(line) for line in result.stdout.splitlines()]


def refusal(response: httpx2.Response, status: int, *fragments: str) -> str:
    """The one-line ``error`` of a refused request."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    return assert_one_line(response.json()["error"], *fragments)


def still_serving(url: str) -> None:
    """The server answers, and still classifies a photo."""
    assert healthy(url)
    response = post(url, [("bar.png", png(garment()))])
    assert response.status_code == 200 and response.json()["results"][0]["label"], response.text[:500]


def garment(size: tuple[int, int] = (300, 400)) -> Image.Image:
    """A dark garment-like shape on white, as a product photo has it."""
    image = Image.new("RGB", size, "white")
    width, height = size
    ImageDraw.Draw(image).rectangle((width // 4, height // 6, 3 * width // 4, 5 * height // 6), fill=(40, 40, 90))
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


pytestmark = pytest.mark.slow  # each test starts a server (a subprocess loading ONNX models)


def test_predict_answers_exactly_what_predict_json_answers(server: str, tmp_path: Path) -> None:
    paths = [*photos(), three_garments(tmp_path)]
    expected = predict_json("--top-k", "3", *map(str, paths))
    assert len(expected) == len(paths) and all("label" in line for line in expected)
    assert expected[-1]["uncertain_reason"] == "3 separate garments in the photo; crop it to one"
    together = post(server, uploads(paths), top_k=3)
    assert together.status_code == 200, together.text[:500]
    assert together.json() == {"model": DEFAULT_MODEL, "results": expected}
    for line in together.json()["results"]:  # the schema of the OpenAPI document describes every field answered
        assert schemas.Result.model_validate(line).model_dump(exclude_unset=True) == line
    for path, line in list(zip(paths, expected, strict=True))[:3]:  # one photo a request: the same answer
        assert post(server, uploads([path]), top_k=3).json()["results"] == [line]
    assert post(server, uploads(paths[:2])).json()["results"] == predict_json(*map(str, paths[:2]))  # top_k 1


def test_another_model_and_the_inputs_the_model_saw(server: str, tmp_path: Path) -> None:
    paths = photos()[:3]
    expected = predict_json("--model", "cnn", "--top-k", "2", "--save-inputs", str(tmp_path), *map(str, paths))
    answer = post(server, uploads(paths), top_k=2, model="cnn", inputs="true").json()
    assert answer["model"] == "cnn"
    assert [{k: v for k, v in line.items() if k != "input_png"} for line in answer["results"]] == expected
    for path, line in zip(paths, answer["results"], strict=True):
        seen = Image.open(io.BytesIO(base64.b64decode(line["input_png"])))
        saved = Image.open(saved_input_path(tmp_path, str(path)))
        assert seen.size == (28, 28) and seen.mode == "L"
        assert np.array_equal(np.asarray(seen), np.asarray(saved))


def test_models_health_and_the_openapi_document(server: str) -> None:
    models = httpx2.get(f"{server}/v1/models").json()
    assert models["default"] == DEFAULT_MODEL
    assert [m["name"] for m in models["models"]] == [e.full_name for e in all_entries() if servable(e)]
    assert {"cnn", "zoo-ensemble", "cnn-small.mnist"} <= {m["name"] for m in models["models"]}
    digits = next(m for m in models["models"] if m["name"] == "cnn-small.mnist")
    assert digits["tag"] == "mnist" and digits["classes"] == [str(d) for d in range(10)]
    assert httpx2.get(f"{server}/healthz").json()["status"] == "ok"
    document = httpx2.get(f"{server}/openapi.json").json()
    assert document["openapi"].startswith("3.") and {"/v1/predict", "/v1/models", "/healthz"} <= set(document["paths"])
    operation = document["paths"]["/v1/predict"]["post"]
    upload = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["files"]
    assert upload == {"type": "array", "items": {"type": "string", "format": "binary"}}
    assert {p["name"] for p in operation["parameters"]} == {"top_k", "model", "inputs"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Predictions")
    assert {"413", "422", "503"} <= set(operation["responses"])
    result = document["components"]["schemas"]["Result"]["properties"]
    assert set(result) == PREDICT_JSON_FIELDS | {"input_png"}
    assert "500" in operation["responses"]


def test_a_bad_upload_gets_predicts_one_line_reason_and_the_server_keeps_serving(server: str, tmp_path: Path) -> None:
    real = photos()[0].read_bytes()
    width = 8000
    bad = {
        "not-an-image.jpg": b"these are not the pixels you are looking for",
        "empty.png": b"",
        "truncated.jpg": real[: len(real) // 3],
        "bomb.png": png(Image.new("L", (width, MAX_PIXELS // width + 1), 255)),
        "blank.png": png(Image.new("RGB", (64, 64), "white")),
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    expected = predict_json(*bad, cwd=tmp_path)
    assert all("error" in line for line in expected)
    for (name, content), line in zip(bad.items(), expected, strict=True):
        assert refusal(post(server, [(name, content)]), 422) == line["error"]
    mixed = post(server, [("bar.png", png(garment())), ("empty.png", b"")])
    assert refusal(mixed, 422) == "empty.png: the file is empty (0 bytes); re-save or re-download it"
    assert "label" in mixed.json()["results"][0] and mixed.json()["results"][1] == expected[1]
    still_serving(server)


def test_bad_requests_are_refused_in_one_line(server: str) -> None:
    photo = [("bar.png", png(garment()))]
    refusal(post(server, photo, model="no-such-model"), 404, "unknown model 'no-such-model'")
    refusal(post(server, photo, top_k=0), 422, "top_k")
    refusal(post(server, photo, top_k="many"), 422, "top_k")
    refusal(post(server, photo, inputs="perhaps"), 422, "inputs")
    refusal(httpx2.post(f"{server}/v1/predict", data={"x": "1"}), 415, "multipart/form-data")
    refusal(httpx2.post(f"{server}/v1/predict", files=[("x", ("a.png", b"1"))]), 400, "form field 'x' is not 'files'")
    refusal(
        httpx2.post(f"{server}/v1/predict", files=[("files", ("", b""))], data={}), 422, "upload-1: the file is empty"
    )
    broken = {"content-type": "multipart/form-data; boundary=xyz"}
    refusal(httpx2.post(f"{server}/v1/predict", content=b"--xyz\r\nnot a header line", headers=broken), 400)
    refusal(httpx2.post(f"{server}/v1/predict", content=b"--xyz--\r\n", headers=broken), 400, "no image")
    long = "b" * 257  # over python-multipart's 256 bytes: refused when its parser is made
    answer = httpx2.post(
        f"{server}/v1/predict",
        content=f"--{long}\r\n".encode(),
        headers={"content-type": f"multipart/form-data; boundary={long}"},
    )
    assert answer.headers["content-type"] == "application/json"
    refusal(answer, 400, "the multipart body is malformed", "256")
    refusal(httpx2.get(f"{server}/v1/nothing"), 404)
    still_serving(server)


def test_request_size_and_image_count_are_bounded() -> None:
    with serving("--max-request-mb", "1", "--max-files", "2") as url:
        big = [("big.png", os.urandom(1024 * 1024))]
        refusal(post(url, big), 413, "1,048,576-byte limit")
        request = httpx2.Request("POST", f"{url}/v1/predict", files=[("files", ("big.png", big[0][1]))])
        body = request.read()
        streamed = httpx2.post(  # no Content-Length: counted as it arrives
            f"{url}/v1/predict",
            content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
            headers={"content-type": request.headers["content-type"]},
        )
        assert "content-length" not in streamed.request.headers
        refusal(streamed, 413, "1,048,576-byte limit")
        refusal(post(url, [(f"{i}.png", png(garment())) for i in range(3)]), 413, "more than 2 images")
        assert post(url, [(f"{i}.png", png(garment())) for i in range(2)]).status_code == 200
        still_serving(url)


def test_a_full_queue_answers_503_with_retry_after() -> None:
    heavy = [(f"{i}.png", png(garment((2400, 3200)))) for i in range(3)]
    with serving("--workers", "1", "--queue", "0") as url, ThreadPoolExecutor(8) as clients:
        responses = list(clients.map(lambda _: post(url, heavy), range(8)))
        statuses = sorted(r.status_code for r in responses)
        assert 200 in statuses and 503 in statuses and set(statuses) == {200, 503}, statuses
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["retry-after"] == "1"
        refusal(busy, 503, "the server is busy (1 requests in hand)")
        still_serving(url)


def test_a_request_over_its_time_answers_503() -> None:
    with serving("--timeout", "0.05") as url:
        slow = [("large.png", png(garment((6000, 6000))))]
        refusal(post(url, slow), 503, "took over 0.05 s")
        assert healthy(url)


def test_concurrent_uploads_in_memory_are_bounded_by_the_queue() -> None:
    """A request takes its place in the queue before it reads its body, so at most workers + queue bodies are in
    memory: with one worker and no queue, a request whose body is still arriving makes the next one 503 at once.
    uvicorn also stops at workers + queue + 64 connections."""
    with serving("--workers", "1", "--queue", "0") as url:
        port = int(url.rsplit(":", 1)[1])
        boundary = "slowbody"
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(
                f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n--{boundary}\r\n".encode()
            )
            time.sleep(1)  # its handler has the only place, waiting for the rest of the body
            busy = post(url, [("bar.png", png(garment()))])
            refusal(busy, 503, "the server is busy (1 requests in hand)")
            assert busy.headers["retry-after"] == "1"
        # the slow client went away: its place is given back
        assert wait_for(lambda: post(url, [("bar.png", png(garment()))]).status_code == 200, timeout=30)
        idle = [
            socket.create_connection(("127.0.0.1", port)) for _ in range(ServerLimits(workers=1, queue=0).connections)
        ]
        try:
            time.sleep(0.5)
            assert httpx2.get(f"{url}/healthz", timeout=10).status_code == 503  # uvicorn's limit_concurrency
        finally:
            for connection in idle:
                connection.close()
        assert wait_for(lambda: healthy(url), timeout=30)
        still_serving(url)


def asgi_post(app: Any, path: str, body: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
    """``POST path`` to the ASGI ``app`` in this process (no server): its status, headers and body. An error the app
    raises again after answering (as Starlette does for a 500) is swallowed."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        try:
            await app(scope, receive, send)
        except RuntimeError:
            if not sent:
                raise

    asyncio.run(call())
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


class RecordedLoads:
    """The real :class:`Classifier`'s loading, each load recorded and, for the models in ``held``, held until their
    event is set: a load long enough for the tests to send other requests meanwhile."""

    def __init__(self, held: dict[str, threading.Event]) -> None:
        self.loads: list[str] = []
        self.held = held

    def from_pretrained(self, entry: Any, **options: Any) -> Classifier:
        self.loads.append(entry.full_name)
        if entry.full_name in self.held:
            assert self.held[entry.full_name].wait(30)
        return Classifier.from_pretrained(entry, **options)


def test_an_unexpected_error_is_a_json_500_and_logged(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    def broken(*_: Any) -> list[dict[str, Any]]:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(server_app, "classify", broken)  # the default model is loaded for real
    app = server_app.create_app(ServerLimits(workers=1))
    body = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\nx\r\n--b--\r\n'
    with caplog.at_level(logging.ERROR, logger="fashionzoo.server"):
        status, headers, answer = asgi_post(app, "/v1/predict", body, "multipart/form-data; boundary=b")
    assert status == 500 and headers["content-type"] == "application/json", answer
    assert_one_line(json.loads(answer)["error"], "the server failed unexpectedly (RuntimeError)")
    assert "POST /v1/predict: RuntimeError: a bug over two lines" in caplog.text


def test_a_model_loading_blocks_only_the_requests_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from fashionzoo.registry.lookup import resolve

    slow = threading.Event()
    loading = RecordedLoads({"cnn": slow})
    monkeypatch.setattr(server_app, "Classifier", loading)
    classifiers = Classifiers(resolve(DEFAULT_MODEL))
    cnn, other = resolve("cnn"), resolve("cnn-small.mnist")
    with ThreadPoolExecutor(3) as threads:
        first, second = threads.submit(classifiers.get, cnn), threads.submit(classifiers.get, cnn)
        assert wait_for(lambda: "cnn" in loading.loads, timeout=10)
        # another model, and the one already loaded, while cnn is loading
        assert isinstance(threads.submit(classifiers.get, other).result(timeout=30), Classifier)
        assert isinstance(classifiers.get(classifiers.default), Classifier)
        assert not first.done() and not second.done()
        slow.set()
        assert first.result(timeout=30) is second.result(timeout=30)
    assert first.result().name == "cnn"
    assert loading.loads == [DEFAULT_MODEL, "cnn", "cnn-small.mnist"]  # each loaded once


def test_the_command_line_refuses_an_address_it_cannot_listen_on_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = run_cli("serve", "--port", str(port))
    assert_cli_error(in_use, f"cannot listen on 127.0.0.1:{port}", "already in use", "another --port")
    assert "Loading" not in in_use.stderr and "Uvicorn" not in in_use.stderr
    elsewhere = run_cli("serve", "--host", "192.0.2.1", "--port", "8000")  # TEST-NET-1: not this machine's
    assert_cli_error(elsewhere, "cannot listen on 192.0.2.1:8000", "--host")
    assert_cli_error(
        run_cli("serve", "--host", "no-such-host.invalid"), "cannot listen on no-such-host.invalid:8000", "--host"
    )
    tiny = assert_cli_error(run_cli("serve", "--max-request-mb", "1e-7"), "--max-request-mb 1e-07 is under one byte")
    assert "max_request_bytes" not in tiny


def test_the_command_line_warns_about_a_host_other_than_loopback() -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--model", "no-such-model")
    assert "fashionzoo: warning: serving on 0.0.0.0, reachable from other machines" in result.stderr
    assert_cli_error(result, "unknown model 'no-such-model'")
    assert "warning" not in run_cli("serve", "--model", "no-such-model").stderr
    assert_cli_error(run_cli("serve", "--replicas", "2"), "--address and --replicas are for --engine ray")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_page_classifies_photos_in_a_real_browser(server: str, tmp_path: Path) -> None:
    if not POOL.is_dir():
        pytest.skip(f"the shared clothing-photos pool is not at {POOL}")
    chosen = [sorted((POOL / kind).iterdir())[3] for kind in ("dress", "shoes", "hat")]
    expected = post(server, uploads(chosen), top_k=3).json()["results"]
    with chromium_page() as page:
        page.set_viewport_size({"width": 900, "height": 760})
        page.goto(server)
        page.wait_for_selector("#model option", state="attached")
        options = page.eval_on_selector_all("#model option", "nodes => nodes.map(n => n.value)")
        assert DEFAULT_MODEL in options and "cnn" in options
        assert page.input_value("#model") == DEFAULT_MODEL
        page.set_input_files("#files", [str(path) for path in chosen])
        page.wait_for_selector(f".result >> nth={len(chosen) - 1}")
        cards = page.query_selector_all(".result")
        shown = {card.get_attribute("data-file"): card for card in cards}
        for path, line in zip(chosen, expected, strict=True):
            card = shown[path.name]
            assert card.eval_on_selector_all(".label", "nodes => nodes.map(n => n.textContent)") == [
                ranked["label"] for ranked in line["top_k"]
            ]
            assert (card.query_selector(".uncertain") is not None) is line["uncertain"]
            size = card.eval_on_selector("img.input", "img => [img.naturalWidth, img.naturalHeight]")
            assert size == [28, 28]
        assert page.text_content("#status") == f"Classified by {DEFAULT_MODEL}."
        shot = page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        if SCREENSHOT:
            Path(SCREENSHOT).write_bytes(shot)
        page.select_option("#model", "cnn")
        page.set_input_files("#files", [str(chosen[0])])
        page.wait_for_function("document.querySelectorAll('.result').length === 4")
        assert page.text_content("#status") == "Classified by cnn."
