"""Prediction files: one row per input (path, label, class_id, probability, uncertain, uncertain_reason, top_k, error,
file_base64), as Parquet or JSON Lines.

``predict --out`` writes them the same way on one machine and on a Ray cluster, so the two can be compared row for
row. pyarrow (the ``ray`` extra) is imported only to build Arrow tables or write Parquet.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.core.files import atomic_path, remove_stale_temporaries
from fashionzoo.runtime.results import Failure, Prediction, name_base64

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

FORMATS = (".parquet", ".jsonl")
ROW_GROUP_ROWS = 65_536
"""Rows gathered before a Parquet row group is written: readers skip through big groups faster than small ones."""
PROGRESS_SECONDS = 5.0
"""Interval of the progress lines."""


def row(result: Prediction | Failure) -> dict[str, Any]:
    """The output row of one result; a failure has only ``path`` and ``error``. ``uncertain_reason`` says why a
    prediction is uncertain whatever its probability (a photo of several separate garments), else null. A name that
    is not UTF-8 has its exact bytes in ``file_base64`` (``path`` escapes them, and could be a file literally named
    so). The columns are in :func:`schema`'s order."""
    if isinstance(result, Failure):
        return {
            "path": _text(result.file),
            "label": None,
            "class_id": None,
            "probability": None,
            "uncertain": None,
            "uncertain_reason": None,
            "top_k": None,
            "error": _text(result.error),
            "file_base64": name_base64(result.file),
        }
    fields = result.result_fields()
    top_k = fields.pop("top_k")
    return {
        "path": _text(result.file),
        **fields,
        "uncertain_reason": result.uncertain_reason,
        "top_k": top_k,
        "error": None,
        "file_base64": name_base64(result.file),
    }


def _text(name: str) -> str:
    """``name`` as UTF-8 text: a file name's bytes that are not UTF-8 (held as surrogates) as ``\\xNN`` escapes,
    which Arrow and JSON can store."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def pyarrow() -> Any:
    """The pyarrow module, or a one-line error naming the extra that installs it."""
    try:
        import pyarrow as pa
    except ImportError:
        raise FashionZooError('Parquet files need pyarrow: pip install "fashionzoo[ray]" (or pyarrow)') from None
    return pa


def schema() -> pa.Schema:
    """The Arrow schema of the rows."""
    pa = pyarrow()
    top = pa.list_(pa.struct([("label", pa.string()), ("class_id", pa.int64()), ("probability", pa.float64())]))
    return pa.schema(
        [
            ("path", pa.string()),
            ("label", pa.string()),
            ("class_id", pa.int64()),
            ("probability", pa.float64()),
            ("uncertain", pa.bool_()),
            ("uncertain_reason", pa.string()),
            ("top_k", top),
            ("error", pa.string()),
            ("file_base64", pa.string()),
        ]
    )


def table(results: Iterable[Prediction | Failure]) -> pa.Table:
    """An Arrow table of ``results``, in order."""
    return pyarrow().Table.from_pylist([row(r) for r in results], schema=schema())


def check_target(target: str, inputs: Iterable[str] = ()) -> str:
    """``target`` if its ending names a known format, it is none of the files ``inputs`` names (compared as files:
    another path to the same file is the same), and its file system is one pyarrow knows (an object store's
    permissions show only when writing), else a one-line error."""
    if not target.lower().endswith(FORMATS):
        raise FashionZooError(f"{target}: name the output file .parquet or .jsonl")
    if "://" in target:
        _object_store(target)
        return target
    for given in inputs:
        with contextlib.suppress(OSError, ValueError):  # an input that is no file here (a pattern, a URI) is not it
            if os.path.samefile(target, given):
                raise FashionZooError(
                    f"{target}: this is an input ({given}); writing the rows there would replace it, name another "
                    "--out file"
                )
    return target


@contextlib.contextmanager
def _sink(target: str) -> Iterator[IO[bytes]]:
    """A binary stream to ``target`` that appears under its name only when the block succeeds: a local file, or an
    object in a pyarrow file system (``s3://``, ``gs://``, ``file://``...). Either is written under a temporary
    name beside the target and moved onto it at the end; a block that raises deletes it (closing an object's stream
    would otherwise publish whatever was written, a Parquet file cut short but valid)."""
    if "://" not in target:
        with atomic_path(Path(target), suffix=Path(target).suffix) as tmp, open(tmp, "wb") as handle:
            remove_stale_temporaries(tmp.parent, Path(target).name)  # of runs killed before they could
            yield handle
        return
    filesystem, path = _object_store(target)
    temporary = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with filesystem.open_output_stream(temporary) as stream:
            yield stream
        filesystem.move(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            filesystem.delete_file(temporary)
        if isinstance(error, OSError):
            raise FashionZooError(f"{target}: cannot write it ({reason(error, first_line=True)})") from None
        raise


def _object_store(target: str) -> tuple[Any, str]:
    """The pyarrow file system of a ``scheme://`` target and the target's path in it, or a one-line error."""
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(target)
    except ValueError as error:  # a scheme or address pyarrow does not know
        raise FashionZooError(
            f"{target}: not a place pyarrow can write to ({reason(error, first_line=True)}); use "
            "a local path or s3://, gs://, hdfs://, file://"
        ) from None
    except OSError as error:  # a known store that could not be reached or opened
        raise FashionZooError(
            f"{target}: cannot open this location ({reason(error, first_line=True)}); check the bucket or host, "
            "the network and the credentials"
        ) from None


class PredictionWriter:
    """Writes Arrow tables of rows to ``.parquet`` or ``.jsonl``; nothing is under the final name until closed."""

    def __init__(self, target: str | os.PathLike, inputs: Iterable[str] = ()) -> None:
        self.target = check_target(os.fspath(target), inputs)
        self.rows = self.failures = 0
        self._stack = contextlib.ExitStack()
        self._sink = self._stack.enter_context(_sink(self.target))
        self._parquet = self.target.lower().endswith(".parquet")
        self._pending: list[pa.Table] = []
        self._writer: Any = None

    def write(self, rows: pa.Table) -> None:
        """Append rows (a table with :func:`schema`)."""
        self.rows += rows.num_rows
        self.failures += rows.num_rows - rows.column("error").null_count
        if not self._parquet:
            self._sink.write("".join(json.dumps(r) + "\n" for r in rows.to_pylist()).encode())
            return
        self._pending.append(rows)
        if sum(t.num_rows for t in self._pending) >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            import pyarrow.parquet as pq

            self._writer = self._stack.enter_context(pq.ParquetWriter(self._sink, schema()))
        if self._pending:
            self._writer.write_table(pyarrow().concat_tables(self._pending))
            self._pending.clear()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        try:
            if kind is None and self._parquet:
                self._flush()  # also writes a valid empty file when there were no rows
        except BaseException as failure:  # the last rows did not fit: the sink learns it, and removes its file
            self._stack.__exit__(type(failure), failure, failure.__traceback__)
            raise
        self._stack.__exit__(kind, error, traceback)


def tables(results: Iterable[Prediction | Failure], rows: int) -> Iterator[pa.Table]:
    """``results`` as Arrow tables of ``rows`` rows (the last one shorter)."""
    pending: list[Prediction | Failure] = []
    for result in results:
        pending.append(result)
        if len(pending) == rows:
            yield table(pending)
            pending.clear()
    if pending:
        yield table(pending)


def write(batches: Iterable[pa.Table], target: str, progress: bool, inputs: Iterable[str] = ()) -> dict[str, Any]:
    """Write ``batches`` of rows to ``target`` (refused if it is one of ``inputs``), with a progress notice every few
    seconds when ``progress``; the summary: images, failures, seconds, images/s."""
    started = last = time.monotonic()
    with PredictionWriter(target, inputs) as writer:
        for rows in batches:
            writer.write(rows)
            if progress and time.monotonic() - last >= PROGRESS_SECONDS:
                last = time.monotonic()
                log.info("%s images done, %s/s", f"{writer.rows:,}", f"{writer.rows / (last - started):,.0f}")
    seconds = time.monotonic() - started
    return {
        "images": writer.rows,
        "failures": writer.failures,
        "seconds": round(seconds, 2),
        "images_per_s": round(writer.rows / seconds, 1) if seconds else None,
        "out": target,
    }
