"""Released files (weights, ONNX, cards): resolve, verify by SHA-256, fetch from the Hugging Face Hub, publish.

No TensorFlow here: the ONNX runtime path uses this module too. Resolution order for a released file:
an explicit local path; a copy shipped inside the package; the local cache; the Hub through
``huggingface_hub.hf_hub_download`` at the record's pinned revision. Every released file is checked
against its SHA-256 before use; a cached copy that fails is deleted.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import httpx2
import huggingface_hub
import huggingface_hub.constants  # a submodule: not an attribute until imported
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.core.files import existing_file, home_dir, sha256_file
from fashionzoo.publish.checks import check_pushable, matches
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.specs import FileRecord, is_safe_filename
from fashionzoo.training import runs

_TRUE = {"1", "true", "yes", "on"}


def shipped_dir() -> Path:
    """The folder of checkpoints shipped inside the package."""
    return Path(str(resources.files("fashionzoo").joinpath("checkpoints")))


def cache_dir() -> Path:
    """Where Hub downloads are cached: ``$FASHIONZOO_HOME/hub`` (the huggingface_hub cache layout)."""
    return home_dir() / "hub"


def _offline() -> bool:
    return huggingface_hub.constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


def _file_record(entry: ModelEntry, key: str) -> FileRecord:
    if entry.weights is None or key not in entry.weights.files:
        kind = "weights" if key == "weights" else f"released {key} file"
        hint = (
            " It needs ImageNet backbone weights: train it with --backbone-weights PATH."
            if entry.needs_backbone_weights
            else f" Train it with 'fashionzoo train {entry.full_name}'."
        )
        raise FashionZooError(f"model {entry.full_name!r} has no {kind} yet.{hint}")
    record = entry.weights.files[key]
    if not is_safe_filename(record.filename):  # FileRecord refuses these; this guards records built around it
        raise FashionZooError(
            f"{record.filename!r}: the registry names a released file outside its folder; reinstall fashionzoo"
        )
    return record


def verify(path: Path, record: FileRecord, remove_on_mismatch: bool = False) -> Path:
    """Check ``path`` against the record's SHA-256 (and size); on mismatch optionally delete it, then fail."""
    if matches(path, record):
        return path
    if remove_on_mismatch:
        _remove_cached(path)
        where = (
            "the cached copy was deleted; run the command again to download it afresh (if this repeats, the Hub "
            "serves another file than the released one)"
        )
    else:
        where = "reinstall fashionzoo" if path.is_relative_to(shipped_dir()) else "replace the file"
    raise FashionZooError(
        f"{path}: SHA-256 does not match the released {record.filename} (tampered or truncated); {where}"
    )


def _remove_cached(path: Path) -> None:
    """Delete a cached file: the snapshot link, and the blob it points to when that is in the cache (a link planted
    in a shared cache must not delete a file elsewhere)."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob.is_relative_to(cache_dir().resolve()):
        blob.unlink(missing_ok=True)


def fetch(entry: ModelEntry, key: str) -> Path:
    """The released file ``key`` of ``entry`` from the cache, else from the Hub; verified before it is returned."""
    record = _file_record(entry, key)
    weights = entry.weights
    assert weights is not None
    if not weights.revision:
        raise FashionZooError(
            f"{record.filename} of {entry.full_name!r} is not published on the Hub yet (no pinned "
            "revision in the registry) and is not shipped in this package"
        )
    where = f"{weights.repo_id}/{record.filename}"
    try:
        path = huggingface_hub.hf_hub_download(
            weights.repo_id,
            record.filename,
            revision=weights.revision,
            cache_dir=cache_dir(),
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            local_files_only=_offline(),
        )
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as error:
        cause = error.__cause__
        if isinstance(error, LocalEntryNotFoundError) and isinstance(cause, HfHubHTTPError) and cause.response:
            why = f"the Hub answered HTTP {cause.response.status_code}; try again later"
        elif isinstance(error, LocalEntryNotFoundError):
            why = (
                "offline mode is on (HF_HUB_OFFLINE) and it is not in the cache; run 'fashionzoo download "
                f"{entry.full_name}' while online"
                if _offline()
                else "the Hub could not be reached and it is not in the cache; check the network or HF_ENDPOINT"
            )
        else:
            why = f"the Hub has no such file at revision {weights.revision[:12]} (HTTP 404)"
        raise FashionZooError(f"{where}: {why}") from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise FashionZooError(f"{where}: the Hub answered HTTP {status}; try again later") from None
    except httpx2.HTTPError as error:
        raise FashionZooError(
            f"{where}: the download was interrupted ({type(error).__name__}); run the command again"
        ) from None
    except OSError as error:
        if error.errno is None:  # huggingface_hub's own consistency checks (size mismatch after download)
            raise FashionZooError(
                f"{where}: the download was incomplete or inconsistent "
                f"({reason(error, first_line=True)}); run the command again"
            ) from None
        raise FashionZooError(
            f"{cache_dir()}: could not write {record.filename} ({error.strerror}); "
            "free some disk space or set FASHIONZOO_HOME"
        ) from None
    return verify(Path(path), record, remove_on_mismatch=True)


FILE_KINDS = {"weights": "a weights file", "onnx": "an ONNX file", "onnx_int8": "an int8 ONNX file"}
"""What each kind of released file is, in words."""


def released_file(entry: ModelEntry, key: str = "weights", path: str | os.PathLike | None = None) -> Path:
    """A verified local path to a model's released file: ``path`` if given, else shipped, cached or fetched."""
    if path is not None:
        return existing_file(path, FILE_KINDS.get(key, f"a {key} file"))
    record = _file_record(entry, key)
    shipped = shipped_dir() / record.filename
    if entry.weights and key in entry.weights.shipped and shipped.is_file():
        return verify(shipped, record)
    return fetch(entry, key)


def weights_sha256(entry: ModelEntry, weights: str | os.PathLike | None = None) -> str:
    """The SHA-256 of a model's weights: the released record's, or read from ``weights``, a local file. Fails
    clearly when the model has no released weights and none are given."""
    weights_path = released_file(entry, "weights", weights)
    released = entry.weights.files if entry.weights and weights is None else {}
    return released["weights"].sha256 if "weights" in released else sha256_file(weights_path)


def push(
    run_dir: str | os.PathLike, repo_id: str, entry: ModelEntry, revision: str | None = None, token: str | None = None
) -> str:
    """Upload a released run to a Hub repo: exactly the files ``entry``'s weights record lists (weights, ONNX files,
    card, metrics), and the run's history and figures; returns the commit hash to pin in ``weights.json``. Nothing
    else in the folder (backups, saved inputs, other files) is sent. A run that may not be published
    (:func:`fashionzoo.publish.checks.check_pushable`) is refused first."""
    run = Path(run_dir)
    check_pushable(run, runs.read_record(run), entry)
    assert entry.weights is not None  # check_pushable refuses an unreleased model
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise FashionZooError(
            f"{repo_id!r}: not a Hub repo id; use NAMESPACE/NAME (letters, digits, '-', '_', '.'), e.g. fashionzoo/cnn"
        ) from None
    if _offline():
        raise FashionZooError(f"{repo_id}: cannot upload while offline mode is on (HF_HUB_OFFLINE); unset it")
    released = [record.filename for record in entry.weights.files.values()]
    figures = [name for name in (runs.HISTORY, runs.CURVES, runs.CONFUSION) if (run / name).is_file()]
    api = huggingface_hub.HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        api.create_repo(repo_id, exist_ok=True)
        commit = api.upload_folder(
            folder_path=run,
            repo_id=repo_id,
            revision=revision,
            allow_patterns=released + figures,  # plain names: this folder's files only
            commit_message=f"fashionzoo: upload {run.name}",
        )
    except HfHubHTTPError as error:
        raise FashionZooError(
            f"{repo_id}: upload failed ({reason(error, first_line=True)}); check the token (HF_TOKEN) and the repo id"
        ) from None
    except (httpx2.HTTPError, OSError) as error:  # connection refused, DNS, timeouts (OSError: ConnectionError...)
        raise FashionZooError(
            f"{repo_id}: could not reach the Hub ({type(error).__name__}); check the network or HF_ENDPOINT"
        ) from None
    return commit.oid
