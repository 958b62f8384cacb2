"""Serve the web example on 127.0.0.1, with the zoo's released ONNX files under /models/.

Usage: python examples/web/serve.py [--port 8000]   then open http://127.0.0.1:8000/?model=cnn-small.mnist

The page and its node_modules (``npm ci`` first) come from this folder. ``/models/NAME.onnx`` is the zoo's released
file for NAME (``NAME.int8.onnx`` its int8 file), found the way ``Classifier.from_pretrained`` finds it (shipped,
cached or fetched; SHA-256 verified), and ``/models/index.json`` lists the names and the zoo's default. Every answer
carries the two headers that make the page cross-origin isolated, which onnxruntime-web needs to run on several
threads. Any static server works for the page itself (one thread without those headers). Standard library and
fashionzoo only.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fashionzoo.core.errors import FashionZooError
from fashionzoo.publish import hub
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.registry.lookup import all_entries, resolve

HERE = Path(__file__).resolve().parent
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
"""Cross-origin isolation: what gives the page SharedArrayBuffer, and so onnxruntime-web its threads."""


def zoo_models() -> list[str]:
    """Every name with a released ONNX file, in registry order (what ``/models/index.json`` lists)."""
    return [e.full_name for e in all_entries() if e.weights and "onnx" in e.weights.files]


def model_file(name: str) -> Path:
    """The released ONNX file of ``cnn-small.mnist.onnx`` or ``cnn.int8.onnx``; FashionZooError for any other name."""
    int8 = name.endswith(".int8.onnx")
    stem = name.removesuffix(".int8.onnx" if int8 else ".onnx")
    if stem == name:
        raise FashionZooError(f"{name}: not an ONNX file name")
    return hub.released_file(resolve(stem), "onnx_int8" if int8 else "onnx")


class Handler(SimpleHTTPRequestHandler):
    """This folder's files and the zoo's models, every answer cross-origin isolated."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def end_headers(self) -> None:
        for header, value in ISOLATION.items():
            self.send_header(header, value)
        super().end_headers()

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/models/index.json":
            self._send(json.dumps({"default": DEFAULT_MODEL, "models": zoo_models()}).encode(), "application/json")
        elif path.startswith("/models/") and "/" not in path.removeprefix("/models/"):
            try:
                data = model_file(path.removeprefix("/models/")).read_bytes()
            except FashionZooError as error:
                self.send_error(404, str(error))
                return
            self._send(data, "application/octet-stream")
        else:
            super().do_GET()

    def _send(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)


def make_server(port: int = 0, quiet: bool = False) -> ThreadingHTTPServer:
    """A server of this folder on 127.0.0.1 (``port`` 0: any free port; ``server.server_port`` says which)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(Handler, directory=str(HERE)))
    server.quiet = quiet  # type: ignore[attr-defined]
    return server


@contextmanager
def serving_in_thread(port: int = 0) -> Iterator[str]:
    """:func:`make_server`, quiet, serving in a daemon thread while the block runs: its URL. Stopped, and its thread
    joined, afterwards."""
    server = make_server(port, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if not (HERE / "node_modules" / "onnxruntime-web").is_dir():
        raise SystemExit(f"onnxruntime-web is not installed: cd {HERE} && npm ci --ignore-scripts")
    server = make_server(args.port)
    print(f"http://127.0.0.1:{server.server_port}/  (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
