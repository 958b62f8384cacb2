"""fashionzoo.publish.hub against a real (local) Hub-like HTTP server: resolution order, cache, verification, failures.

Nothing here mocks ``huggingface_hub.hf_hub_download``: every download goes through its HTTP code to
:class:`hub_server.HubServer`. Only the retry back-off sleeps of huggingface_hub are skipped (and recorded).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from pathlib import Path

import huggingface_hub
import huggingface_hub.file_download
import huggingface_hub.utils._http
import pytest
from helpers import (
    COMMIT_A,
    COMMIT_B,
    CONTENT_A,
    CONTENT_B,
    FILENAME,
    REPO,
    assert_cli_error,
    assert_one_line,
    cached_files,
    make_entry,
    repo_cache,
)
from hub_server import HubServer, flip_first_byte

import fashionzoo
from fashionzoo.core.errors import FashionZooError
from fashionzoo.publish import hub
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import get_entry

# -- downloads and the cache ----------------------------------------------------------------------------------------


def test_first_download_lands_in_the_cache(server: HubServer) -> None:
    path = hub.released_file(make_entry())

    assert path.is_relative_to(hub.cache_dir())
    assert path == repo_cache() / "snapshots" / COMMIT_A / FILENAME
    assert path.read_bytes() == CONTENT_A
    url_path = server.resolve_path(REPO, COMMIT_A, FILENAME)
    assert server.requests == [("HEAD", url_path), ("GET", url_path)]
    for headers in server.request_headers:
        assert "authorization" not in headers  # no token leaks from the developer's machine
    assert not list(repo_cache().rglob("*.incomplete"))


def test_cached_copy_is_reused_without_any_request(server: HubServer) -> None:
    first = hub.released_file(make_entry())
    seen = server.count()
    assert seen == 2

    second = hub.released_file(make_entry())

    assert second == first
    assert second.read_bytes() == CONTENT_A
    assert server.count() == seen  # not even a HEAD: the pinned commit is in the cache


def test_the_pinned_revision_is_downloaded(server: HubServer) -> None:
    path_a = hub.released_file(make_entry(CONTENT_A, COMMIT_A))
    path_b = hub.released_file(make_entry(CONTENT_B, COMMIT_B))

    assert path_a.read_bytes() == CONTENT_A
    assert path_b.read_bytes() == CONTENT_B
    assert COMMIT_A in path_a.parts and COMMIT_B in path_b.parts
    assert [path for _, path in server.requests] == [server.resolve_path(REPO, COMMIT_A, FILENAME)] * 2 + [
        server.resolve_path(REPO, COMMIT_B, FILENAME)
    ] * 2


def test_download_through_an_lfs_style_redirect(server: HubServer) -> None:
    """The Hub answers LFS files with a 302 to a CDN on another origin: HEAD stops there, GET follows it."""
    server.lfs_redirect = True

    path = hub.released_file(make_entry())

    assert path.read_bytes() == CONTENT_A
    methods_paths = server.requests
    assert methods_paths[0] == ("HEAD", server.resolve_path(REPO, COMMIT_A, FILENAME))
    assert methods_paths[1] == ("GET", f"/cdn/{hashlib.sha256(CONTENT_A).hexdigest()}")
    assert len(methods_paths) == 2


def test_record_pinned_to_a_revision_the_entry_does_not_match(server: HubServer) -> None:
    """A record whose SHA-256 describes CONTENT_A but pins COMMIT_B gets CONTENT_B: rejected and not cached."""
    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry(CONTENT_A, COMMIT_B))

    assert "SHA-256" in assert_one_line(excinfo)
    assert cached_files() == []


# -- verification -----------------------------------------------------------------------------------------------------


def test_a_link_planted_in_the_cache_never_deletes_its_target(server: HubServer, tmp_path: Path) -> None:
    """A shared cache's snapshot link pointed at a file elsewhere: the check fails and removes the link only."""
    path = hub.released_file(make_entry())
    victim = tmp_path / "someone-elses-file.txt"
    victim.write_text("private")
    path.unlink()
    path.symlink_to(victim)
    with pytest.raises(FashionZooError, match="SHA-256 does not match"):
        hub.released_file(make_entry())
    assert victim.read_text() == "private" and not os.path.lexists(path)


def test_a_record_pins_a_commit_never_a_branch() -> None:
    with pytest.raises(ValueError, match="'main' is not a commit hash"):
        make_entry(revision="main")


@pytest.mark.parametrize("tamper", [flip_first_byte, lambda content: content + b"extra"], ids=["same-size", "longer"])
def test_tampered_download_is_rejected_and_not_cached(server: HubServer, tamper) -> None:
    server.tamper = tamper

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry())

    message = assert_one_line(excinfo)
    assert "SHA-256" in message and FILENAME in message
    assert server.count("GET") == 1  # it was really downloaded, then rejected
    assert cached_files() == []  # no blob, no snapshot link, no *.incomplete

    server.tamper = None  # the genuine file downloads cleanly afterwards
    assert hub.released_file(make_entry()).read_bytes() == CONTENT_A


def test_cached_copy_tampered_on_disk_is_deleted_then_downloaded_again(server: HubServer) -> None:
    path = hub.released_file(make_entry())
    blob = path.resolve()
    assert blob != path and blob.parent.name == "blobs"
    blob.chmod(0o644)
    blob.write_bytes(flip_first_byte(CONTENT_A))
    before = server.count()

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry())

    message = assert_one_line(excinfo)
    assert "SHA-256" in message and "deleted" in message
    assert server.count() == before  # the cache was trusted, checked, and failed: no request
    assert not path.exists() and not path.is_symlink() and not blob.exists()
    assert cached_files() == []

    again = hub.released_file(make_entry())

    assert again.read_bytes() == CONTENT_A
    assert server.requests[before:] == [
        ("HEAD", server.resolve_path(REPO, COMMIT_A, FILENAME)),
        ("GET", server.resolve_path(REPO, COMMIT_A, FILENAME)),
    ]


# -- failures ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        make_entry(filename="missing.weights.h5"),  # EntryNotFound
        make_entry(revision=hashlib.sha1(b"no such commit").hexdigest()),  # RevisionNotFound
        make_entry(repo_id="fashionzoo-test/no-such-repo"),  # RepoNotFound
    ],
    ids=["entry", "revision", "repo"],
)
def test_not_on_the_hub_is_a_404_error(server: HubServer, entry: ModelEntry) -> None:
    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(entry)

    message = assert_one_line(excinfo)
    assert "404" in message and entry.weights.files["weights"].filename in message
    assert server.count("HEAD") == 1 and server.count("GET") == 0
    assert not list(hub.cache_dir().rglob("*.incomplete"))


def test_server_error_on_every_request_names_the_status(server: HubServer, sleeps: list[float]) -> None:
    server.force_status = 500

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry())

    assert "500" in assert_one_line(excinfo)


def test_server_error_on_every_request_is_retried_then_fails_on_one_line(
    server: HubServer, sleeps: list[float]
) -> None:
    server.force_status = 500

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry())

    assert_one_line(excinfo)
    assert server.count("GET") == 0
    assert server.count("HEAD") > 1 and sleeps  # huggingface_hub retried the metadata call (without waiting here)
    assert cached_files() == []


def test_server_error_on_the_download_names_the_status(server: HubServer) -> None:
    server.force_status, server.force_methods = 503, frozenset({"GET"})

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry())

    assert "503" in assert_one_line(excinfo)
    assert server.count("HEAD") == 1 and server.count("GET") >= 1
    assert cached_files() == []


def test_server_down_is_one_line_error(hub_env: Path, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    with HubServer() as stopped:
        url = stopped.url
    monkeypatch.setenv("HF_ENDPOINT", url)  # nothing listens on that port any more

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry())

    message = assert_one_line(excinfo)
    assert "reached" in message
    assert sleeps  # the connection was attempted and retried
    assert cached_files() == []


def test_connection_dropped_mid_file_leaves_no_partial_file(server: HubServer, sleeps: list[float]) -> None:
    server.drop_mid_body = True

    with pytest.raises(Exception):  # noqa: B017 - which exception is the subject of the next test
        hub.released_file(make_entry())

    assert server.count("GET") > 1  # huggingface_hub retried the download before giving up
    assert cached_files() == []


def test_connection_dropped_mid_file_is_a_fashionzoo_error(server: HubServer, sleeps: list[float]) -> None:
    server.drop_mid_body = True

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry())

    assert_one_line(excinfo)
    assert cached_files() == []


def test_one_dropped_connection_is_retried(server: HubServer, sleeps: list[float]) -> None:
    server.drop_mid_body, server.drop_times = True, 1

    path = hub.released_file(make_entry())

    assert path.read_bytes() == CONTENT_A
    assert server.count("GET") == 2
    assert cached_files() == [path.resolve(), path]


def test_one_dropped_connection_is_resumed_with_a_range_request(
    server: HubServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub keeps only whole chunks (10 MB by default) of a cut body; with 1 KiB chunks it resumes."""
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    server.drop_mid_body, server.drop_times = True, 1

    path = hub.released_file(make_entry())

    assert path.read_bytes() == CONTENT_A
    gets = server.headers_of("GET")
    assert len(gets) == 2 and "range" not in gets[0]
    assert gets[1]["range"] == f"bytes={len(CONTENT_A) // 2 // 1024 * 1024}-"


def test_download_disagreeing_with_its_metadata_is_a_one_line_error(server: HubServer) -> None:
    server.tamper, server.tamper_methods = (lambda content: content + b"extra"), frozenset({"GET"})

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry())

    assert "disk space" not in assert_one_line(excinfo)
    assert cached_files() == []


def test_download_disagreeing_with_its_metadata_leaves_nothing_cached(server: HubServer) -> None:
    server.tamper, server.tamper_methods = (lambda content: content + b"extra"), frozenset({"GET"})

    with pytest.raises(FashionZooError):
        hub.released_file(make_entry())

    assert server.count("GET") == 1
    assert cached_files() == []


def test_a_failed_fetch_does_not_break_a_concurrent_download_of_the_same_repo(server: HubServer) -> None:
    server.pause_mid_body = threading.Event()
    outcome: dict[str, object] = {}

    def download() -> None:
        try:
            outcome["path"] = hub.released_file(make_entry())
        except Exception as error:  # noqa: BLE001 - reported to the main thread
            outcome["error"] = error

    worker = threading.Thread(target=download, daemon=True)
    worker.start()
    try:
        assert server.paused.wait(timeout=10)
        assert list(repo_cache().glob("blobs/*.incomplete"))  # the download is in progress
        with pytest.raises(FashionZooError):  # another file of the same repo, not on the Hub
            hub.released_file(make_entry(filename="missing.onnx"))
    finally:
        server.pause_mid_body.set()
        worker.join(timeout=10)

    assert "error" not in outcome, outcome.get("error")
    assert Path(outcome["path"]).read_bytes() == CONTENT_A


def test_offline_with_an_empty_cache_fails_without_a_request(
    server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry())

    assert "offline" in assert_one_line(excinfo)
    assert server.requests == []
    assert cached_files() == []


def test_offline_with_a_warm_cache_works_without_a_request(server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    online = hub.released_file(make_entry())
    server.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    offline = hub.released_file(make_entry())

    assert offline == online and offline.read_bytes() == CONTENT_A
    assert server.requests == []


def test_unpublished_record_is_an_error_without_a_request(server: HubServer) -> None:
    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry(revision=None))

    message = assert_one_line(excinfo)
    assert "not published" in message and FILENAME in message
    assert server.requests == []


def test_model_without_weights_is_an_error(server: HubServer) -> None:
    entry = dataclasses.replace(get_entry("lenet5"), weights=None)

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(entry)

    assert "no weights" in assert_one_line(excinfo)
    assert server.requests == []


# -- explicit paths and shipped files ----------------------------------------------------------------------------------


def test_explicit_path_is_returned_as_is(server: HubServer, tmp_path: Path) -> None:
    local = tmp_path / "mine.weights.h5"
    local.write_bytes(b"not the released file")  # an explicit file is the user's: not checked against the record

    assert hub.released_file(make_entry(), path=local) == local
    assert hub.released_file(make_entry(), path=str(local)) == local
    assert server.requests == []


def test_missing_explicit_path_is_an_error(server: HubServer, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.weights.h5"

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry(), path=missing)

    assert str(missing) in assert_one_line(excinfo)
    assert server.requests == []


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty stand-in for the package's checkpoints folder."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    monkeypatch.setattr(hub, "shipped_dir", lambda: folder)
    return folder


def test_shipped_file_is_used_without_a_request(server: HubServer, shipped: Path) -> None:
    (shipped / FILENAME).write_bytes(CONTENT_A)

    path = hub.released_file(make_entry(shipped=("weights",)))

    assert path == shipped / FILENAME
    assert server.requests == []
    assert cached_files() == []


def test_corrupted_shipped_file_is_an_error_and_kept(server: HubServer, shipped: Path) -> None:
    (shipped / FILENAME).write_bytes(flip_first_byte(CONTENT_A))

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(make_entry(shipped=("weights",)))

    message = assert_one_line(excinfo)
    assert "SHA-256" in message and "reinstall" in message
    assert (shipped / FILENAME).exists()  # never delete files inside the package
    assert server.requests == []


def test_shipped_key_without_the_file_falls_back_to_the_hub(server: HubServer, shipped: Path) -> None:
    path = hub.released_file(make_entry(shipped=("weights",)))

    assert path.is_relative_to(hub.cache_dir()) and path.read_bytes() == CONTENT_A
    assert server.count("GET") == 1


def test_file_not_marked_shipped_is_not_taken_from_the_package(server: HubServer, shipped: Path) -> None:
    (shipped / FILENAME).write_bytes(CONTENT_A)

    path = hub.released_file(make_entry(shipped=()))

    assert path.is_relative_to(hub.cache_dir())
    assert server.count("GET") == 1


# -- uploads ----------------------------------------------------------------------------------------------------------

PACKAGE = Path(fashionzoo.__file__).resolve().parent
RELEASED_RUN = "mlp-64-32"


def released_run_files() -> dict[str, bytes]:
    """The released run folder of :data:`RELEASED_RUN`, as shipped (checkpoints, card, record, history, figures):
    what push uploads."""
    docs = PACKAGE.parents[1] / "docs" / "models" / RELEASED_RUN
    files = {path.name: path.read_bytes() for path in docs.iterdir()}
    for record in get_entry(RELEASED_RUN).weights.files.values():
        if record.filename not in files:
            files[record.filename] = (PACKAGE / "checkpoints" / record.filename).read_bytes()
    return files


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_push_uploads_a_run_and_its_commit_serves_the_files(
    hub_env: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    import re

    from click.testing import CliRunner

    from fashionzoo.cli import main

    run = hub_env / "run"
    (run / "backup").mkdir(parents=True)
    (run / "inputs").mkdir()
    released = released_run_files()
    others = {
        "notes.txt": b"not part of a release",
        "backup/latest.weights.h5": b"optimizer state",
        "inputs/customer-photo.png": b"a saved input",
        "other-model.onnx": b"another model",
    }
    for name, content in {**released, **others}.items():
        (run / name).write_bytes(content)
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        result = CliRunner().invoke(
            main,
            [
                "push",
                "mlp-64-32",
                "--repo-id",
                "someone/mlp",
                "--run",
                str(run),
                "--token",
                "hf_test_token",
                *(["--json"] if as_json else []),
            ],
        )
        assert result.exit_code == 0, result.output
        if as_json:
            summary = json.loads(result.stdout)
            commit = summary["commit"]
            assert summary == {"model": "mlp-64-32", "repo_id": "someone/mlp", "commit": commit, "run": str(run)}
        else:
            commit = re.search(r"at commit ([0-9a-f]{40})", result.stdout)[1]
        assert server.files[("someone/mlp", commit)] == released  # nothing else (subfolders matched '*' before)
        assert [path for method, path in server.requests if method == "POST"] == [
            "/api/repos/create",
            "/api/validate-yaml",
            "/api/models/someone/mlp/preupload/main",
            "/api/models/someone/mlp/commit/main",
        ]
        assert all(h.get("authorization") == "Bearer hf_test_token" for h in server.headers_of("POST"))
        fetched = huggingface_hub.hf_hub_download(
            "someone/mlp", "mlp-64-32.weights.h5", revision=commit, cache_dir=hub_env / "fetched", endpoint=server.url
        )
        assert Path(fetched).read_bytes() == released["mlp-64-32.weights.h5"]
        (run / "mlp-64-32.weights.h5").write_bytes(b"weights trained since the release")
        stale = CliRunner().invoke(main, ["push", "mlp-64-32", "--repo-id", "someone/mlp", "--run", str(run)])
        assert_cli_error(stale, "mlp-64-32.weights.h5 missing or not the released file")


def test_push_failure_is_one_line(hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from fashionzoo.cli import main

    run = hub_env / "run"
    run.mkdir()
    for name, content in released_run_files().items():
        (run / name).write_bytes(content)
    with HubServer() as server:
        server.force_status, server.force_methods = 403, frozenset({"POST"})
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        result = CliRunner().invoke(
            main, ["push", "mlp-64-32", "--repo-id", "someone/mlp", "--run", str(run), "--token", "hf_bad"]
        )
    assert_cli_error(result, "upload failed", "HF_TOKEN")
    assert len(result.stderr.strip().splitlines()) == 1
