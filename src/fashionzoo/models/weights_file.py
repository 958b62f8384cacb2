"""Check a Keras ``.weights.h5`` file against the model it is meant for, before Keras reads any of it.

Keras reads whatever a dataset declares: a 205 kB file whose dense kernel declared 250 million gzip-compressed
float32 values made ``load_weights`` allocate 4.5 GB before it noticed the wrong shape. :func:`check_weights_file`
opens the file with h5py and compares its structure with the one Keras writes for the model: every group and
dataset path, each dataset's shape and dtype, and nothing else. Only HDF5 metadata is read, never a dataset's
data, so the check costs the same whatever the file declares. Imports Keras: import lazily.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import keras

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.core.files import atomic_path

MAX_ATTRIBUTE_BYTES = 1 << 16
"""Largest HDF5 attribute accepted (Keras writes only short names)."""

Layout = dict[str, tuple[tuple[int, ...], str] | None]
"""Every link of a weights file: path -> (shape, dtype) for a dataset, None for a group."""


def _describe(entry: tuple[tuple[int, ...], str] | None) -> str:
    if entry is None:
        return "a group"
    shape, dtype = entry
    return f"{shape} {dtype}"


def read_layout(path: Path) -> Layout:
    """The structure of an HDF5 file (its metadata only); refuses links to elsewhere, external or virtual storage
    and oversized attributes, which a Keras weights file never has."""
    layout: Layout = {}

    def visit(name: str) -> None:
        link = file.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise FashionZooError(
                f"{path}: {name} is a {type(link).__name__} to elsewhere; a Keras weights file holds its data itself"
            )
        item = file[name]
        for attribute in item.attrs:
            if item.attrs.get_id(attribute).get_storage_size() > MAX_ATTRIBUTE_BYTES:
                raise FashionZooError(
                    f"{path}: attribute {attribute!r} of {name} is over {MAX_ATTRIBUTE_BYTES} bytes; "
                    "not a Keras weights file"
                )
        if isinstance(item, h5py.Dataset):
            if item.external or item.is_virtual:
                raise FashionZooError(f"{path}: {name} reads its data from other files; not a Keras weights file")
            layout[name] = (tuple(item.shape or ()), str(item.dtype))  # "float32"; ">f4" when big-endian
        else:
            layout[name] = None

    try:
        with h5py.File(path, "r") as file:
            file.visit_links(visit)
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        raise FashionZooError(f"{path}: not a readable HDF5 weights file ({reason(error, first_line=True)})") from None
    return layout


def expected_layout(model: keras.Model) -> Layout:
    """The structure Keras writes for ``model``: it is saved once into a temporary folder and read back (through
    :func:`atomic_path`, so that a full temporary disk is a one-line error, not an HDF5 crash)."""
    with (
        tempfile.TemporaryDirectory(prefix="fashionzoo-layout-") as folder,
        atomic_path(Path(folder) / "expected.weights.h5", suffix=".weights.h5") as reference,
    ):
        model.save_weights(reference)
        return read_layout(reference)


def check_weights_file(path: Path, model: keras.Model, name: str) -> None:
    """Refuse ``path`` unless it holds exactly the variables of ``model`` (registry model ``name``): the same groups
    and datasets, each with the model's shape and dtype. The message names the first difference."""
    found, expected = read_layout(path), expected_layout(model)
    if found == expected:
        return
    fix = f"pass a .weights.h5 file written by 'fashionzoo train {name}' (with the same options)"
    for item in sorted(found.keys() | expected.keys()):
        if item not in expected:
            problem = f"the file holds {item} ({_describe(found[item])}), which the model does not have"
        elif item not in found:
            problem = f"the file lacks {item} ({_describe(expected[item])})"
        elif found[item] != expected[item]:
            problem = f"{item} is {_describe(found[item])} in the file, the model needs {_describe(expected[item])}"
        else:
            continue
        raise FashionZooError(f"{path}: these weights do not fit model {name!r}: {problem}; {fix}")
