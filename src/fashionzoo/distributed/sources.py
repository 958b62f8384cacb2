"""The inputs of a Ray prediction job: a folder, glob, object-store folder or list of paths into ``path`` and
``error`` rows, a local list checked on the driver first."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.distributed.cluster import is_uri

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data


def _uri_folder(uri: str, recursive: bool = False) -> list[dict[str, str | None]]:
    """The image files of an object-store (or any pyarrow file system) folder, and with ``recursive`` of its
    subfolders, sorted by their path under it, or one error row."""
    from pyarrow import fs

    from fashionzoo.runtime.inputs import IMAGE_EXTENSIONS

    try:
        filesystem, root = fs.FileSystem.from_uri(uri)
        infos = filesystem.get_file_info(fs.FileSelector(root, recursive=recursive))
    except (OSError, ValueError) as error:
        return [{"path": uri, "error": f"{uri}: cannot list the folder ({error})"}]
    prefix, under = uri.rstrip("/") + "/", len(root.rstrip("/")) + 1
    names = sorted(
        i.path[under:] for i in infos if i.type == fs.FileType.File and i.base_name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not names:
        return [{"path": uri, "error": f"{uri}: no image files in this folder ({', '.join(IMAGE_EXTENSIONS)})"}]
    return [{"path": prefix + name, "error": None} for name in names]


def input_paths(source: str, rows_per_block: int, recursive: bool = False) -> ray.data.Dataset:
    """A dataset of ``path`` (and ``error``, set where an input cannot be expanded) rows, in blocks of
    ``rows_per_block`` (a block is what one actor call gets, and what Ray re-runs after a failure): a ``.txt`` list
    (one path a line) or ``.parquet`` list (a ``path`` column) read by Ray; a folder or glob expanded here as the
    single-machine ``predict`` does (subfolders too with ``recursive``); a ``scheme://`` folder listed through
    pyarrow (``source`` as :func:`checked_source` returns it)."""
    import pyarrow as pa
    import ray.data

    from fashionzoo.runtime.inputs import expand_inputs
    from fashionzoo.runtime.results import Failure

    lowered = source.lower()
    if lowered.endswith(".parquet"):
        paths = ray.data.read_parquet(source, columns=["path"]).map_batches(_path_rows, batch_format="pyarrow")
    elif lowered.endswith(".txt"):
        paths = ray.data.read_binary_files(source, include_paths=True).map_batches(
            _listed_paths, batch_format="pyarrow"
        )
    else:
        rows = (
            _uri_folder(source, recursive)
            if is_uri(source)
            else [
                {"path": i.file, "error": i.error} if isinstance(i, Failure) else {"path": i, "error": None}
                for i in expand_inputs([source], recursive)
            ]
        )
        paths = ray.data.from_arrow(
            pa.Table.from_pylist(rows, schema=pa.schema([("path", pa.string()), ("error", pa.string())]))
        )
    return paths.repartition(target_num_rows_per_block=rows_per_block)


def checked_source(source: str) -> str:
    """``source`` for :func:`input_paths`, checked on the driver before the cluster is contacted: a local ``.txt`` or
    ``.parquet`` list must exist, hold a path, and (Parquet) have a ``path`` column; it is named by its absolute
    path, since Ray's readers run in other folders and on other nodes."""
    if not source.lower().endswith((".parquet", ".txt")) or is_uri(source):
        return source
    source = os.path.abspath(source)
    if os.path.isdir(source):  # a list written as a folder of parts (Spark, Ray): Ray reads it as it is
        return source
    if not os.path.isfile(source):
        raise FashionZooError(
            f"{source}: no such list of paths (a .txt with one path a line, or a .parquet with a 'path' column)"
        )
    if source.lower().endswith(".txt"):
        _check_has_a_line(source)
    else:
        _check_path_column(source)
    return source


def _check_has_a_line(source: str) -> None:
    """A one-line error for a local ``.txt`` list without a path (read up to its first non-blank line)."""
    with open(source, "rb") as lines:
        if not any(line.strip() for line in lines):
            raise FashionZooError(f"{source}: an empty list of paths; nothing to classify")


def _check_path_column(source: str) -> None:
    """A one-line error when a local Parquet list cannot be read, has no ``path`` column or no rows."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(source)
    except (OSError, ValueError) as error:
        raise FashionZooError(
            f"{source}: not a readable Parquet list of paths ({reason(error, first_line=True)})"
        ) from None
    names = metadata.schema.to_arrow_schema().names
    if "path" not in names:
        raise FashionZooError(f"{source}: no 'path' column (it has: {', '.join(names) or 'none'})")
    if metadata.num_rows == 0:
        raise FashionZooError(f"{source}: an empty list of paths; nothing to classify")


NO_PATH = "a row of the list has no path (NULL); fill it in or drop the row"


def _listed_paths(batch: pa.Table) -> pa.Table:
    """``path`` and ``error`` rows of ``.txt`` lists (``bytes`` and ``path`` of each file, one path a line)."""
    return _path_rows(_text_lines(batch))


def _text_lines(batch: pa.Table) -> pa.Table:
    """The lines of ``.txt`` lists as ``text`` rows; a line that is not UTF-8 is an error row naming the list and
    the line's number (its text with the bytes escaped), so that one badly encoded path fails only itself."""
    import pyarrow as pa

    texts: list[str] = []
    errors: list[str | None] = []
    for data, source in zip(batch.column("bytes").to_pylist(), batch.column("path").to_pylist(), strict=True):
        for number, line in enumerate(data.split(b"\n"), 1):
            try:
                texts.append(line.decode("utf-8"))
                errors.append(None)
            except UnicodeDecodeError as error:
                texts.append(line.decode("utf-8", "backslashreplace").strip())
                why = f"{error.reason} at byte {error.start}"
                errors.append(f"{source}, line {number}: not UTF-8 text ({why}); save the list as UTF-8")
    return pa.table({"text": pa.array(texts, pa.string()), "error": pa.array(errors, pa.string())})


def _path_rows(batch: pa.Table) -> pa.Table:
    """``path`` and ``error`` rows of a path list's lines (``text``, with the ``error`` of a line that could not be
    read) or ``path`` column: blank lines dropped, a leading byte-order mark removed, a row with no path (NULL) kept
    as an error row, not dropped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = batch.column("text" if "text" in batch.column_names else "path").cast(pa.string())
    given = batch.column("error") if "error" in batch.column_names else pa.nulls(len(column), pa.string())
    paths = pc.utf8_trim_whitespace(pc.utf8_ltrim(column, characters="\ufeff"))
    kept = pc.fill_null(pc.not_equal(paths, ""), True)
    paths, given = paths.filter(kept), given.filter(kept)
    return pa.table({"path": pc.fill_null(paths, ""), "error": pc.if_else(pc.is_null(paths), NO_PATH, given)})
