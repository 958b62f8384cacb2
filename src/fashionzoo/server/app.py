"""The ASGI app: ``POST /v1/predict``, ``GET /v1/models``, ``GET /healthz``, the page at ``/``, and the OpenAPI
document at ``/openapi.json`` (FastAPI: an OpenAPI description that client generators use, request options checked
from their types). Every refusal is JSON ``{"error": one line}``."""

from __future__ import annotations

import base64
import logging
import threading
from importlib import resources
from typing import Any

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.version import __version__
from fashionzoo.photos.convert import ImageBytes
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import all_entries, resolve
from fashionzoo.runtime.classifier import Classifier
from fashionzoo.runtime.results import Prediction
from fashionzoo.server import schemas
from fashionzoo.server.limits import RequestRefused, ServerLimits, WorkQueue, busy
from fashionzoo.server.uploads import FIELD, read_images

LOG = logging.getLogger("fashionzoo.server")

UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FIELD],
                "properties": {FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        }
    },
}
"""The request body of ``/v1/predict`` for the OpenAPI document (the body is parsed by :mod:`.uploads`)."""
REFUSALS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.Refusal, "description": what}
    for status, what in (
        (400, "A malformed request, or no image in it."),
        (404, "An unknown model, or one without a released ONNX file."),
        (413, "Over the request size or the number of images."),
        (415, "Not multipart/form-data."),
        (
            422,
            "An image could not be classified (its one-line reason; every image's result in 'results'), "
            "or a bad option.",
        ),
        (500, "An unexpected error in the server (logged)."),
        (503, "Busy (the queue is full) or over the time per request; see Retry-After."),
    )
}


def servable(entry: ModelEntry) -> bool:
    """Whether ``entry`` has a released ONNX file, which the server runs."""
    return entry.weights is not None and "onnx" in entry.weights.files


def servable_entry(name: str) -> ModelEntry:
    """The registry's entry for ``name``; refused when there is no such model or no ONNX file to run."""
    entry = resolve(name)
    if not servable(entry):
        raise FashionZooError(
            f"model {entry.full_name!r} has no released ONNX file; GET /v1/models lists the servable ones"
        )
    return entry


class Classifiers:
    """One :class:`Classifier` per model, loaded on first use (the default one at once) and kept. Each model has its
    own lock, held while it loads (which may fetch it): a request for a model being loaded waits for it, and requests
    for the others go on."""

    def __init__(self, default: ModelEntry) -> None:
        self._loaded: dict[str, Classifier] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()  # only around the two dicts
        self.default = default
        self.get(default)

    @staticmethod
    def entry(name: str) -> ModelEntry:
        """:func:`servable_entry`, refused with 404."""
        try:
            return servable_entry(name)
        except FashionZooError as error:
            raise RequestRefused(404, str(error)) from None

    def get(self, entry: ModelEntry) -> Classifier:
        """The classifier of ``entry`` (blocking the first time: the file is read, or fetched and verified)."""
        name = entry.full_name
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            loading = self._locks.setdefault(name, threading.Lock())
        with loading:
            with self._lock:
                if name in self._loaded:  # loaded by the request this one waited for
                    return self._loaded[name]
            try:
                classifier = Classifier.from_pretrained(entry, spinning=False)
            except FashionZooError as error:
                raise RequestRefused(503, str(error)) from None
            with self._lock:
                self._loaded[name] = classifier
            return classifier


def classify(classifier: Classifier, images: list[ImageBytes], top_k: int, inputs: bool) -> list[dict[str, Any]]:
    """``predict --json``'s line for each image, in order (one thread, no processes); with ``inputs``, each
    prediction's model input as a base64 PNG in ``input_png``."""
    lines = []
    for result in classifier.classify(images, top_k=top_k, workers=1):
        line = result.as_dict()
        if inputs and isinstance(result, Prediction):
            line["input_png"] = base64.b64encode(result.model_input_png()).decode("ascii")
        lines.append(line)
    return lines


def create_app(limits: ServerLimits | None = None, default_model: str = DEFAULT_MODEL) -> FastAPI:
    """The app, its default model loaded (a wrong name or a missing file is refused here, in one line)."""
    limits = limits or ServerLimits()
    try:
        classifiers = Classifiers(servable_entry(default_model))
    except RequestRefused as refusal:
        raise FashionZooError(refusal.message) from None
    work = WorkQueue(limits)
    page = resources.files("fashionzoo.server").joinpath("page.html").read_text(encoding="utf-8")
    app = FastAPI(
        title="fashionzoo",
        version=__version__,
        description="Fashion-MNIST and MNIST classifiers of the fashionzoo model zoo, on ONNX Runtime. "
        "POST images to /v1/predict; each answer is what 'fashionzoo predict --json' prints for the same file.",
    )
    app.router.on_shutdown.append(work.close)

    @app.exception_handler(RequestRefused)
    async def refused(_: Request, error: RequestRefused) -> JSONResponse:
        return JSONResponse({"error": error.message}, error.status, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "query")
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, error.status_code, error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # the traceback is logged by uvicorn (Starlette raises the error again after this answer is sent)
        LOG.error("%s %s: %s", request.method, request.url.path, " ".join(f"{type(error).__name__}: {error}".split()))
        return JSONResponse(
            {"error": f"the server failed unexpectedly ({type(error).__name__}); the error is in its log"}, 500
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz", response_model=schemas.Health)
    async def healthz() -> dict[str, str]:
        """Whether the server answers."""
        return {"status": "ok", "version": __version__}

    @app.get("/v1/models", response_model=schemas.ModelList)
    async def models() -> dict[str, Any]:
        """Every model with released ONNX weights, from the registry, and the default one."""
        return {"default": classifiers.default.full_name, "models": [e.summary() for e in all_entries() if servable(e)]}

    @app.post(
        "/v1/predict",
        response_model=schemas.Predictions,
        responses=REFUSALS,
        openapi_extra={"requestBody": UPLOAD_BODY},
    )
    async def predict(
        request: Request,
        top_k: int = Query(1, ge=1, description="Classes per image."),
        model: str | None = Query(None, description="A model name or alias (default: the server's)."),
        inputs: bool = Query(False, description="Also return the 28x28 image the model saw, as a base64 PNG."),
    ) -> JSONResponse:
        """Classify one or more images (multipart, one 'files' part each): each result is 'predict --json''s line
        for the same file. 422 when an image could not be classified, with its reason and every image's result."""
        entry = classifiers.entry(model) if model else classifiers.default
        try:  # the place in the queue first: at most workers + queue requests hold their bodies in memory
            with work.slot() as slot, anyio.fail_after(limits.seconds):
                images = await read_images(request, limits)
                lines = await slot.run(lambda: classify(classifiers.get(entry), images, top_k, inputs))
        except TimeoutError:
            raise busy(f"the request took over {limits.seconds:g} s; send fewer or smaller images") from None
        failed = [line["error"] for line in lines if "error" in line]
        if failed:
            return JSONResponse({"error": failed[0], "results": lines}, 422)
        return JSONResponse({"model": entry.full_name, "results": lines})

    return app
