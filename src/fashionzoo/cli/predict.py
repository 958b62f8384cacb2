"""``predict``."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import click

from fashionzoo.cli.common import (
    CLOSED_OUTPUT_STATUS,
    FiniteFloatRange,
    address_option,
    device_option,
    echo_json,
    engine_option,
    import_tensorflow_quietly,
    json_option,
    main,
    printable,
    user_errors,
)
from fashionzoo.core.errors import FashionZooError

if TYPE_CHECKING:
    from fashionzoo.runtime.classifier import Classifier
    from fashionzoo.runtime.keras_classifier import KerasClassifier
    from fashionzoo.runtime.results import Failure, Prediction


@main.command(
    epilog=f"Exit status: 0 when every input was classified; 1 when one failed (its error on stderr, the others still "
    f"classified) or on an error; {CLOSED_OUTPUT_STATUS} when the output is closed early, e.g. by 'head'."
)
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGE|DIR|GLOB...")
@click.option("--model", "name", help="Model name or alias (default: the zoo's default model).")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Classes shown per image.")
@json_option
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@device_option(note=" The onnx backend's cuda needs onnxruntime-gpu.")
@click.option(
    "--onnx",
    "onnx_path",
    type=click.Path(dir_okay=False),
    help="A local ONNX file (default: released); the photo calibration in its metadata applies, if it has one.",
)
@click.option(
    "--backend",
    type=click.Choice(["onnx", "keras"]),
    default="onnx",
    show_default=True,
    help="keras: the TensorFlow model, for comparison.",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="Keras backend: a local .weights.h5 file.")
@click.option("--progress/--no-progress", default=None, help="A running count on stderr (default: when a terminal).")
@click.option("--recursive", "-r", is_flag=True, help="Folders: take the images in their subfolders too.")
@click.option(
    "--save-inputs",
    type=click.Path(file_okay=False),
    help="Write the 28x28 image the model saw for each input under this folder (INPUT.png).",
)
@click.option(
    "--calibrated/--uncalibrated",
    default=True,
    show_default=True,
    help="Shift photos' probabilities by the weights' photo calibration (docs/photos.md).",
)
@click.option(
    "--uncertain-below",
    type=FiniteFloatRange(0, 1),
    default=None,
    help="Mark predictions whose top probability is below this as uncertain (default: chosen for the "
    "model on real photos, see docs/photos.md).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Write one row per input (path, label, class_id, probability, uncertain, top_k, error, file_base64 for a name "
    "that is not UTF-8) to a .parquet or "
    ".jsonl file (or object-store path) and print a summary; files that fail are rows with an error, and the exit "
    "status stays 0.",
)
@engine_option
@address_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Workers decoding images (default: one per CPU core; processes from 256 files on, else "
    "threads); with --engine ray, at most this many "
    "inference actors (default: one per GPU with cuda, else one per CPU of the cluster less one).",
)
@user_errors
def predict(
    inputs: tuple[str, ...],
    name: str | None,
    top_k: int,
    as_json: bool,
    batch_size: int,
    device: str,
    onnx_path: str | None,
    backend: str,
    weights: str | None,
    progress: bool | None,
    recursive: bool,
    save_inputs: str | None,
    calibrated: bool,
    uncertain_below: float | None,
    out: str | None,
    engine: str,
    address: str | None,
    workers: int | None,
) -> None:
    """Classify image files, folders of images or glob patterns; exit status 1 if any file failed.

    With --engine ray: one SOURCE (a folder, a glob, a .txt or .parquet list of paths, or an object-store folder
    such as s3://bucket/photos/) classified on a Ray cluster into --out."""
    from fashionzoo.registry.catalogue import DEFAULT_MODEL
    from fashionzoo.runtime.inputs import expand_inputs

    name = name or DEFAULT_MODEL
    show_progress = sys.stderr.isatty() if progress is None else progress
    if engine == "ray":
        if len(inputs) != 1 or not out or backend != "onnx":
            raise FashionZooError("--engine ray classifies one SOURCE into --out with the onnx backend")
        if save_inputs:
            raise FashionZooError(
                "--save-inputs is for the single-machine predict (the actors' files stay on their "
                "nodes); drop it or --engine ray"
            )
        from fashionzoo.distributed.predict import predict as predict_on_ray

        _summary(
            predict_on_ray(
                inputs[0],
                out,
                address=address,
                name=name,
                onnx_path=onnx_path,
                device=device,
                top_k=top_k,
                batch_size=batch_size,
                workers=workers,
                progress=show_progress,
                calibrated=calibrated,
                uncertain_below=uncertain_below,
                recursive=recursive,
            ),
            as_json,
        )
        return
    if address:
        raise FashionZooError("--address is for --engine ray")
    classifier = _classifier(backend, name, onnx_path, weights, device, calibrated)
    results = classifier.classify(
        expand_inputs(inputs, recursive),
        top_k=top_k,
        batch_size=batch_size,
        workers=workers,
        uncertain_below=uncertain_below,
    )
    if save_inputs:
        results = _saving_inputs(results, save_inputs)
    if out:
        from fashionzoo.runtime import prediction_files as predictions

        _summary(predictions.write(predictions.tables(results, batch_size), out, show_progress, inputs), as_json)
        return
    if _print_results(results, as_json, batch_size if show_progress else None):
        sys.exit(1)


def _classifier(
    backend: str, name: str, onnx_path: str | None, weights: str | None, device: str, calibrated: bool
) -> Classifier | KerasClassifier:
    """The ONNX Runtime classifier, or with ``--backend keras`` the Keras one (TensorFlow loaded quietly)."""
    if backend == "onnx":
        from fashionzoo.runtime.classifier import Classifier

        if weights:
            raise FashionZooError("--weights is for --backend keras; pass an ONNX file with --onnx")
        return Classifier.from_pretrained(
            name, onnx_path=onnx_path, device=device, calibrated=calibrated, spinning=False
        )
    if onnx_path:
        raise FashionZooError("--onnx is for --backend onnx; pass Keras weights with --weights")
    import_tensorflow_quietly()
    from fashionzoo.runtime.keras_classifier import KerasClassifier

    return KerasClassifier.from_pretrained(name, weights=weights, device=device, calibrated=calibrated)


def _print_results(results: Iterable[Prediction | Failure], as_json: bool, progress_every: int | None) -> bool:
    """Print each result as a line (JSON, or ``FILE: LABEL (P), LABEL (P)... [uncertain]``), a failure's error on
    stderr, and a running count every ``progress_every`` files; whether any failed."""
    from fashionzoo.runtime.results import Failure

    failed = False
    count = 0
    for count, result in enumerate(results, 1):
        if progress_every and count % progress_every == 0:
            click.echo(f"fashionzoo: {count} files done", err=True)
        if isinstance(result, Failure):
            failed = True
            click.echo(f"fashionzoo: error: {printable(result.error)}", err=True)
        if as_json:  # a line for every input, in order: a consumer matches them up by ``file``
            echo_json(result.as_dict())
        elif not isinstance(result, Failure):
            ranked = ", ".join(f"{label} ({p:.2f})" for label, p in result.top_k)
            flag = f" [uncertain: {result.uncertain_reason}]" if result.uncertain_reason else ""
            flag = flag or (" [uncertain]" if result.uncertain else "")
            click.echo(printable(f"{result.file}: {ranked}") + flag)
    if progress_every and (count % progress_every or not count):  # not already said by the loop
        click.echo(f"fashionzoo: {count} files done", err=True)
    return failed


def _saving_inputs(results: Iterable[Prediction | Failure], folder: str) -> Iterator[Prediction | Failure]:
    """``results``, each prediction's 28x28 model input written under ``folder`` as it passes; one that cannot be
    saved is a failure of that input, and the others go on."""
    from fashionzoo.runtime.results import Failure, Prediction

    for result in results:
        if isinstance(result, Prediction):
            try:
                result.save_model_input(folder)
            except FashionZooError as error:
                result = Failure(result.file, str(error))
        yield result


def _summary(summary: dict[str, Any], as_json: bool) -> None:
    """The closing line of ``predict --out``."""
    if as_json:
        echo_json(summary)
        return
    where = f" (Ray: {summary['workers']} inference actors, {summary['nodes']} nodes)" if "workers" in summary else ""
    images = f"{summary['images']:,} image{'' if summary['images'] == 1 else 's'}"
    click.echo(
        f"fashionzoo: {images}, {summary['failures']:,} failed, {summary['seconds']:.1f} s, "
        f"{summary['images_per_s'] or 0:,.0f} images/s{where}; written to {summary['out']}"
    )
