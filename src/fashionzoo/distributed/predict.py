"""Batch prediction on a Ray cluster with Ray Data (searches and seed sweeps: :mod:`fashionzoo.distributed.tune`).

Ray is the optional ``ray`` extra (``pip install "fashionzoo[ray]"``); it is imported only when one of these
functions runs. Every node needs fashionzoo installed (the same version as the driver); the driver's
``FASHIONZOO_*`` environment variables are passed on to the job's workers.

- :func:`predict`: the paths of a folder, glob, path list or object-store folder are mapped through a fixed pool of
  actors, each holding one ONNX Runtime session (the driver's resolved model file, shipped through the object
  store) and running :func:`fashionzoo.runtime.classify.classify_files`, so rows are those of the single-machine path.
  The driver streams the finished blocks into one output file; Ray re-runs the batch of an actor that died
  (the actor is restarted), and a block reaches the driver only once, so every input is written exactly once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.distributed.cluster import connected, is_uri, remote_reason
from fashionzoo.distributed.sources import checked_source, input_paths

if TYPE_CHECKING:
    import onnx
    import pyarrow as pa

    from fashionzoo.photos.calibration import PhotoCalibration
    from fashionzoo.runtime.results import Failure, Prediction

log = logging.getLogger(__name__)
FETCH_THREADS = 16
"""Object-store files an actor fetches at once: for small images the latency of each request, not bandwidth,
is the limit."""


class Predictor:
    """A Ray Data actor: one ONNX Runtime session, reused for every batch it is given."""

    def __init__(
        self,
        model: list[Any],
        name: str,
        calibration: PhotoCalibration | None,
        device: str,
        top_k: int,
        batch_size: int,
        cwd: str,
        uncertain_below: float | None = None,
    ) -> None:
        """``model``: ``[ref]``, the object-store reference of :func:`model_files` (in a list, so that Ray passes
        the reference itself, small enough to stay with the actor's arguments for a restart); ``calibration``: the
        driver's classifier's photo calibration."""
        import ray

        from fashionzoo.runtime.classifier import Classifier

        with tempfile.TemporaryDirectory(prefix="fashionzoo-") as folder:
            for file_name, data in ray.get(model[0]).items():
                (Path(folder) / file_name).parent.mkdir(parents=True, exist_ok=True)
                (Path(folder) / file_name).write_bytes(data)
            path = Path(folder) / MODEL_NAME
            # one thread (for the model and for loading): the actor holds one CPU of the node, its neighbours the others
            self.classifier = Classifier(
                path, name=name, device=device, intra_op_threads=1, photo_calibration=calibration, calibrated=False
            )
        self.top_k, self.batch_size, self.uncertain_below = top_k, batch_size, uncertain_below
        if os.path.isdir(cwd):  # relative paths mean what they meant on the driver (a shared file system)
            os.chdir(cwd)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from fashionzoo.runtime import prediction_files as predictions
        from fashionzoo.runtime.results import Failure

        paths, errors = batch.column("path").to_pylist(), batch.column("error").to_pylist()
        with _local_copies(paths) as (copies, not_fetched):
            errors = [e or not_fetched.get(p) for p, e in zip(paths, errors, strict=True)]
            items = [Failure(p, e) if e else copies.get(p, p) for p, e in zip(paths, errors, strict=True)]
            results = list(
                self.classifier.classify(
                    items, top_k=self.top_k, batch_size=self.batch_size, workers=1, uncertain_below=self.uncertain_below
                )
            )
        if copies:
            results = [_named_as(result, copies) for result in results]
        return predictions.table(results)


MODEL_NAME = "model.onnx"
"""The model file's name in an actor's folder."""


def model_files(path: Path) -> dict[str, bytes]:
    """The bytes of an ONNX file (as :data:`MODEL_NAME`) and of the external data files its tensors name, by their
    location beside it: what an actor writes into a folder of its own to open the same model."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    files = {MODEL_NAME: path.read_bytes()}
    for tensor in _tensors(onnx.load(path, load_external_data=False).graph):
        if uses_external_data(tensor):
            location = os.path.normpath(ExternalDataInfo(tensor).location)
            if os.path.isabs(location) or location.split(os.sep)[0] in ("..", MODEL_NAME):
                raise FashionZooError(
                    f"{path}: its external data {location} is not a file in the model's folder; keep the data "
                    "files beside the .onnx file"
                )
            if location not in files:
                files[location] = (path.parent / location).read_bytes()
    return files


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``graph`` and of its subgraphs: initializers and tensor attributes (``Constant``)."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for subgraph in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                yield from _tensors(subgraph)


@contextlib.contextmanager
def _local_copies(paths: list[str]) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """Local copies of the ``scheme://`` paths among ``paths`` (uri -> copy), fetched :data:`FETCH_THREADS` at a
    time and deleted on exit, and the one-line reasons of those that could not be fetched (uri -> error)."""
    uris = [p for p in paths if is_uri(p)]
    if not uris:
        yield {}, {}
        return
    with tempfile.TemporaryDirectory(prefix="fashionzoo-fetch-") as folder:
        copies = {uri: os.path.join(folder, f"{i}-{uri.rsplit('/', 1)[-1]}") for i, uri in enumerate(uris)}
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            errors = dict(zip(uris, pool.map(_fetch, copies.items()), strict=True))
        failed = {uri: error for uri, error in errors.items() if error}
        yield {uri: copy for uri, copy in copies.items() if uri not in failed}, failed


FETCH_ATTEMPTS = 3
"""Tries per object-store file: a throttled or timed-out request (S3's 503 SlowDown) is tried again after 1 and 2
seconds; a missing file is not."""


def _fetch(uri_and_copy: tuple[str, str]) -> str | None:
    """Copy one object-store file; None, or the one-line reason it could not be fetched."""
    uri, copy = uri_and_copy
    parts = urlsplit(uri)
    for attempt in range(FETCH_ATTEMPTS):
        try:
            filesystem, root = _filesystem(f"{parts.scheme}://{parts.netloc}/")
            with filesystem.open_input_stream(root.rstrip("/") + parts.path) as source, open(copy, "wb") as target:
                shutil.copyfileobj(source, target)
            return None
        except FileNotFoundError:
            return f"{uri}: no such file (check the path)"
        except (OSError, ValueError) as error:
            Path(copy).unlink(missing_ok=True)
            if isinstance(error, ValueError) or attempt == FETCH_ATTEMPTS - 1:
                return f"{uri}: could not fetch it ({reason(error, first_line=True)})"
            time.sleep(1 + attempt)
    return None  # not reached: the last attempt returns


@functools.lru_cache(maxsize=16)
def _filesystem(root: str) -> tuple[Any, str]:
    """The pyarrow file system of a ``scheme://bucket/`` root and the root's path in it, made once per actor (an
    object store's client resolves credentials and region when it is made)."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(root)


def _named_as(result: Prediction | Failure, copies: dict[str, str]) -> Prediction | Failure:
    """``result`` naming the object-store path instead of its local copy."""
    from fashionzoo.runtime.results import Failure

    for uri, copy in copies.items():
        if result.file == copy:
            if isinstance(result, Failure):
                return dataclasses.replace(result, file=uri, error=result.error.replace(copy, uri))
            return dataclasses.replace(result, file=uri)
    return result


def _pool(ray: Any, device: str, workers: int | None) -> tuple[Any, int, dict[str, float]]:
    """The actor pool (strategy, largest size) and each actor's resources: one GPU each with cuda, else one CPU
    each. By default as many actors as the cluster has GPUs, or CPUs less one, so that reading tasks are never
    starved by a pool that holds every CPU; ``workers`` asks for that many, started as resources appear (an
    autoscaling cluster adds nodes for them)."""
    resources = ray.cluster_resources()
    gpu = device == "cuda" and bool(resources.get("GPU"))
    per_actor: dict[str, float] = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
    if workers:
        return ray.data.ActorPoolStrategy(min_size=1, max_size=workers), workers, per_actor
    size = int(resources["GPU"]) if gpu else max(int(resources.get("CPU", 1)) - 1, 1)
    return ray.data.ActorPoolStrategy(size=size), size, per_actor


def predict(
    source: str,
    out: str,
    *,
    address: str | None = None,
    name: str | None = None,
    onnx_path: str | None = None,
    device: str = "auto",
    top_k: int = 1,
    batch_size: int = 256,
    workers: int | None = None,
    progress: bool = True,
    calibrated: bool = True,
    uncertain_below: float | None = None,
    recursive: bool = False,
) -> dict[str, Any]:
    """Classify every image of ``source`` on the cluster into ``out`` (``.parquet`` or ``.jsonl``, one row per
    input, in input order, the rows of the single-machine ``predict --out`` with the same options); returns the
    summary (images, failures, seconds, images/s, workers, nodes)."""
    from fashionzoo.registry.catalogue import DEFAULT_MODEL
    from fashionzoo.runtime import prediction_files as predictions
    from fashionzoo.runtime.classifier import Classifier
    from fashionzoo.runtime.classify import check_options

    check_options(top_k, batch_size, workers, uncertain_below)  # here, not in every actor after the upload
    predictions.check_target(out, [source])
    source = checked_source(source)
    clf = Classifier.from_pretrained(name or DEFAULT_MODEL, onnx_path=onnx_path, device="cpu", calibrated=calibrated)
    with connected(address) as ray:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the driver's own progress lines instead
        pool, size, resources = _pool(ray, device, workers)
        model = ray.put(model_files(clf.path))  # held here for the whole job: restarted actors fetch it again
        ds = input_paths(source, batch_size, recursive).map_batches(
            Predictor,
            fn_constructor_kwargs={
                "model": [model],
                "name": clf.name,
                "calibration": clf.photo_calibration,
                "device": device,
                "top_k": top_k,
                "batch_size": batch_size,
                "cwd": os.getcwd(),
                "uncertain_below": uncertain_below,
            },
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=pool,
            num_cpus=resources.get("num_cpus"),
            num_gpus=resources.get("num_gpus"),
        )
        try:
            summary = predictions.write(ds.iter_batches(batch_size=None, batch_format="pyarrow"), out, progress)
        except ray.exceptions.RayError as error:
            raise FashionZooError(f"the Ray job failed: {remote_reason(error)}") from None
        return {**summary, "workers": size, "nodes": sum(1 for node in ray.nodes() if node["Alive"])}
