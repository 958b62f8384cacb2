"""A small, real Hugging Face Hub look-alike for tests: plain HTTP on 127.0.0.1, files held in memory.

It answers what ``huggingface_hub.hf_hub_download`` (2.4) asks for a model file at a pinned revision:

* ``HEAD /{repo_id}/resolve/{revision}/{filename}``: the metadata call. The client needs ``X-Repo-Commit`` (else
  ``FileMetadataError``), an ``ETag`` (normalised, used as the blob name in the cache) and the size, read from
  ``Content-Length`` (or ``X-Linked-Size`` on a redirect). No ``X-Xet-Hash`` / ``X-Xet-Refresh-Route`` header
  and no ``Link: ...; rel="xet-auth"``: with those the client would switch to the Xet protocol (``hf_xet``).
  No ``/api/...`` endpoint is needed.
* ``GET`` on the same URL (or on the ``Location`` of a redirect): the bytes, with ``Range: bytes=N-`` honoured
  (``206`` + ``Content-Range``), which is how the client resumes a download cut mid-body.
* Errors: ``404`` with ``X-Error-Code`` ``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``, which
  ``hf_raise_for_status`` maps to ``RepositoryNotFoundError`` / ``RevisionNotFoundError`` /
  ``RemoteEntryNotFoundError``.

Uploads (what ``HfApi.create_repo`` + ``HfApi.upload_folder`` ask for; ``fashionzoo push`` uses them):

* ``POST /api/repos/create``: ``{"url": ...}``; ``POST /api/validate-yaml`` (a README.md's metadata): no errors.
* ``POST /api/models/{repo_id}/preupload/{revision}``: every file ``"uploadMode": "regular"`` (no LFS, no Xet), so
  the file contents travel inline in the commit.
* ``POST /api/models/{repo_id}/commit/{revision}``: an NDJSON body (a ``header`` line, then one ``file`` line per
  file with base64 ``content``). The files are stored on top of the branch's previous commit under a new
  40-hex commit id, which is returned as ``commitOid``; the branch name then resolves to it as well.

Switches for failure injection (plain attributes, changeable while the server runs): :attr:`HubServer.force_status`,
:attr:`HubServer.tamper`, :attr:`HubServer.drop_mid_body`, and :attr:`HubServer.lfs_redirect` (answer like the
real Hub does for LFS files: a ``302`` to a "CDN" on another origin, with ``X-Linked-Etag`` / ``X-Linked-Size``).

Usage::

    with HubServer() as hub:
        hub.add("org/repo", "0123...cdef", "model.weights.h5", b"...")
        os.environ["HF_ENDPOINT"] = hub.url
        ...
        assert hub.requests == [("HEAD", "/org/repo/resolve/0123...cdef/model.weights.h5"), ("GET", ...)]

or the :func:`hub_server` pytest fixture (import it into a test module or a ``conftest.py``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

Files = dict[tuple[str, str], dict[str, bytes]]
"""``{(repo_id, revision): {filename: content}}``."""

_RESOLVE = re.compile(r"^/(?P<repo_id>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
_CDN = re.compile(r"^/cdn/(?P<sha>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")
_UPLOAD = re.compile(r"^/api/models/(?P<repo_id>[^/]+/[^/]+)/(?P<action>preupload|commit)/(?P<revision>[^/]+)$")


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def flip_first_byte(content: bytes) -> bytes:
    """A default :attr:`HubServer.tamper`: same size, different SHA-256."""
    return bytes([content[0] ^ 0xFF]) + content[1:] if content else b"\x00"


class HubServer:
    """A Hub-like HTTP server in a daemon thread; see the module docstring."""

    def __init__(self, files: Files | None = None, host: str = "127.0.0.1") -> None:
        self.files: Files = {key: dict(value) for key, value in (files or {}).items()}
        self.requests: list[tuple[str, str]] = []
        """Every request received, in order: ``(method, path)``."""
        self.request_headers: list[dict[str, str]] = []
        """The headers of each request in :attr:`requests` (lower-cased names)."""
        self.force_status: int | None = None
        """Answer every request (of :attr:`force_methods`) with this status and no file."""
        self.force_methods: frozenset[str] = frozenset({"HEAD", "GET"})
        self.tamper: Callable[[bytes], bytes] | None = None
        """Serve ``tamper(content)`` instead of the registered bytes; headers (ETag, sizes) describe what is served."""
        self.tamper_methods: frozenset[str] = frozenset({"HEAD", "GET"})
        """Which requests :attr:`tamper` applies to: ``{"GET"}`` alone makes the metadata disagree with the body."""
        self.drop_mid_body = False
        """Cut GET bodies: send the headers with the full ``Content-Length``, the bytes up to the middle of the file,
        then close the connection. The cut sits at a fixed offset of the file, so a resumed request (``Range``) past
        it gets its headers and no byte at all."""
        self.drop_times: int | None = None
        """How many GET bodies to cut while :attr:`drop_mid_body` is on; ``None``: every one."""
        self.pause_mid_body: threading.Event | None = None
        """If set, GET bodies stop at the middle of the file until this event is set (then finish normally)."""
        self.paused = threading.Event()
        """Set by the server when a GET body reaches the :attr:`pause_mid_body` point."""
        self.lfs_redirect = False
        """Answer ``/resolve`` with a ``302`` to ``http://localhost:<port>/cdn/<sha256>`` (another origin than
        ``127.0.0.1``) carrying ``X-Linked-Etag`` and ``X-Linked-Size``, like the Hub does for LFS files."""
        self._lock = threading.Lock()
        self._cdn: dict[str, bytes] = {}
        self._httpd = ThreadingHTTPServer((host, 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- set-up -------------------------------------------------------------------------------------------------

    def add(self, repo_id: str, revision: str, filename: str, content: bytes) -> str:
        """Serve ``content`` as ``filename`` of ``repo_id`` at ``revision``; returns its SHA-256."""
        with self._lock:
            self.files.setdefault((repo_id, revision), {})[filename] = content
        return sha256_hex(content)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The endpoint to put in ``HF_ENDPOINT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def resolve_path(self, repo_id: str, revision: str, filename: str) -> str:
        """The request path ``hf_hub_download`` uses for a file."""
        return f"/{repo_id}/resolve/{revision}/{filename}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"hub-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket: the port then refuses connections."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- views of the request log -------------------------------------------------------------------------------

    def count(self, method: str | None = None) -> int:
        """How many requests were received (of one method if given)."""
        with self._lock:
            return sum(1 for m, _ in self.requests if method is None or m == method)

    def headers_of(self, method: str) -> list[dict[str, str]]:
        """The headers of every request of ``method``, in order."""
        with self._lock:
            return [headers for (m, _), headers in zip(self.requests, self.request_headers, strict=True) if m == method]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.request_headers.clear()

    # -- request handling (called from the handler threads) -----------------------------------------------------

    def _commit(self, repo_id: str, branch: str, ndjson: bytes) -> str:
        """Store an upload as a new commit on top of ``branch``; returns the commit id."""
        lines = [json.loads(line) for line in ndjson.splitlines() if line.strip()]
        added = {
            item["value"]["path"]: base64.b64decode(item["value"]["content"]) for item in lines if item["key"] == "file"
        }
        with self._lock:
            files = {**self.files.get((repo_id, branch), {}), **added}
            commit = hashlib.sha1(
                json.dumps(sorted((k, sha256_hex(v)) for k, v in files.items())).encode()
                + branch.encode()
                + str(len(self.files)).encode()
            ).hexdigest()
            self.files[(repo_id, commit)] = files
            self.files[(repo_id, branch)] = files
        return commit

    def _record(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((method, path))
            self.request_headers.append(headers)

    def _take_drop(self) -> bool:
        with self._lock:
            if not self.drop_mid_body:
                return False
            if self.drop_times is None:
                return True
            if self.drop_times <= 0:
                return False
            self.drop_times -= 1
            return True

    def _lookup(
        self, method: str, repo_id: str, revision: str, filename: str
    ) -> tuple[int, dict[str, str], bytes | None]:
        """``(status, headers, content)`` for a ``/resolve`` URL (content is ``None`` on errors)."""
        with self._lock:
            repo_revisions = {rev: files for (repo, rev), files in self.files.items() if repo == repo_id}
        if not repo_revisions:
            return 404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, None
        if revision not in repo_revisions:
            return 404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}, None
        commit = {"X-Repo-Commit": revision}
        if filename not in repo_revisions[revision]:
            return 404, {**commit, "X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"}, None
        content = repo_revisions[revision][filename]
        if self.tamper is not None and method in self.tamper_methods:
            content = self.tamper(content)
        return 200, commit, content


def _make_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a stopped server leaves no keep-alive socket behind.
        protocol_version = "HTTP/1.0"
        server_version = "FakeHub/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
            pass

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self._handle(send_body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._handle(send_body=True)

        def do_POST(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            server._record("POST", path, {k.lower(): v for k, v in self.headers.items()})
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if server.force_status is not None and "POST" in server.force_methods:
                self._send_error(server.force_status, {}, f"forced {server.force_status}")
            elif path == "/api/validate-yaml":  # the model card's metadata, checked before a README.md upload
                self._send_json({"errors": [], "warnings": []})
            elif path == "/api/repos/create":
                request = json.loads(body)
                self._send_json({"url": f"{server.url}/{request['organization']}/{request['name']}"})
            elif (match := _UPLOAD.match(path)) and match["action"] == "preupload":
                files = json.loads(body)["files"]
                self._send_json(
                    {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                )
            elif match:
                commit = server._commit(match["repo_id"], unquote(match["revision"]), body)
                self._send_json({"commitOid": commit, "commitUrl": f"{server.url}/{match['repo_id']}/commit/{commit}"})
            else:
                self._send_error(404, {}, "unknown API route")

        def _send_json(self, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self, send_body: bool) -> None:
            path = urlsplit(self.path).path
            server._record(self.command, path, {k.lower(): v for k, v in self.headers.items()})
            if server.force_status is not None and self.command in server.force_methods:
                self._send_error(server.force_status, {}, f"forced {server.force_status}")
                return
            if cdn := _CDN.match(path):
                with server._lock:
                    content = server._cdn.get(cdn["sha"])
                if content is None:
                    self._send_error(404, {}, "no such blob")
                else:
                    self._send_file(content, {}, send_body)
                return
            match = _RESOLVE.match(path)
            if match is None:
                self._send_error(404, {}, "not a resolve URL")
                return
            status, headers, content = server._lookup(
                self.command, match["repo_id"], unquote(match["revision"]), unquote(match["filename"])
            )
            if content is None:
                self._send_error(status, headers, headers.get("X-Error-Message", "not found"))
            elif server.lfs_redirect:
                sha = sha256_hex(content)
                with server._lock:
                    server._cdn[sha] = content
                self.send_response(302)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Location", f"http://localhost:{server.port}/cdn/{sha}")
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(content)))
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send_file(content, headers, send_body)

        def _send_error(self, status: int, headers: dict[str, str], message: str) -> None:
            body = f'{{"error": "{message}"}}'.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _send_file(self, content: bytes, headers: dict[str, str], send_body: bool) -> None:
            total = len(content)
            start, end, status = 0, total - 1, 200
            if send_body and (wanted := self.headers.get("Range")):
                parsed = _RANGE.match(wanted.strip())
                if parsed is None or int(parsed["start"]) >= max(total, 1):
                    self._send_error(416, {"Content-Range": f"bytes */{total}"}, "range not satisfiable")
                    return
                start, status = int(parsed["start"]), 206
                end = min(int(parsed["end"]), total - 1) if parsed["end"] else total - 1
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("ETag", f'"{sha256_hex(content)}"')
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
            self.end_headers()
            if not send_body:
                return
            body = content[start : end + 1]
            if server._take_drop():
                cut = total // 2  # a fixed offset of the file: a resumed request past it gets nothing
                self.wfile.write(body[: max(cut - start, 0)])
                self.wfile.flush()
                self.close_connection = True
                return
            if server.pause_mid_body is not None:
                middle = max(total // 2 - start, 0)
                self.wfile.write(body[:middle])
                self.wfile.flush()
                server.paused.set()
                server.pause_mid_body.wait(timeout=30)
                body = body[middle:]
            self.wfile.write(body)

    return Handler


@pytest.fixture
def hub_server() -> Iterator[HubServer]:
    """A running, empty :class:`HubServer` (stopped after the test). Point ``HF_ENDPOINT`` at ``hub_server.url``."""
    with HubServer() as server:
        yield server
