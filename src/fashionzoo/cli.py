"""The ``fashionzoo`` command line (click). Heavy modules are imported inside each command."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fashionzoo import __version__
from fashionzoo._files import DISK_ERRNOS, DiskError, FashionZooError, check_can_write
from fashionzoo.registry import DEFAULT_TAG, TAGS, ModelEntry, all_entries, get_entry, with_tag

if TYPE_CHECKING:
    from fashionzoo.runtime import Failure, Prediction


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`FashionZooError` into a one-line message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FashionZooError as error:
            click.echo(f"fashionzoo: error: {_printable(str(error))}", err=True)
            sys.exit(1)

    return wrapper


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 pointed at /dev/null while it loads: its C++ start-up notices
    (oneDNN, absl's "before InitializeLog") are written there before any setting can stop them, and would bury the
    command's one-line messages. Errors it raises still surface; later C++ notices are filtered by
    ``TF_CPP_MIN_LOG_LEVEL`` (2 unless set). Commands call it just before their first TensorFlow import, after their
    cheap checks, so that a wrong name or path is still refused at once."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """``text`` safe for a terminal line: control characters (newlines, ANSI escapes) as ``\\n``, ``\\x1b``...,
    and the bytes of a name that is not UTF-8 as ``\\xff``."""
    text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None; a dict that held one gets an ``error`` field naming
    its keys (strict JSON has no NaN or Infinity)."""
    if isinstance(value, dict):
        clean = {key: _finite(item) for key, item in value.items()}
        bad = [str(key) for key, item in value.items() if isinstance(item, float) and not math.isfinite(item)]
        return {**clean, "error": f"not finite (NaN or infinity), given as null: {', '.join(bad)}"} if bad else clean
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _echo_json(obj: Any) -> None:
    """One line of strict JSON (RFC 8259: no NaN or Infinity, see :func:`_finite`)."""
    click.echo(json.dumps(_finite(obj), indent=None, allow_nan=False))


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False), help="Folder of IDX files to read.")
dataset_option = click.option("--dataset", type=click.Choice(list(TAGS)),
                              help="The data set (default: the model name's tag, e.g. cnn-small.mnist; else "
                              f"{DEFAULT_TAG}).")  # fmt: skip


class _Notices(logging.Handler):
    """The library's log messages as the CLI's one-line notices on stderr: ``fashionzoo: message``."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"fashionzoo: {record.getMessage()}", err=True)  # the stderr of the moment (CliRunner too)


engine_option = click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                             help="ray: run on a Ray cluster (pip install \"fashionzoo[ray]\"; see docs/scale-out.md).")
address_option = click.option("--address", help="--engine ray: the cluster, e.g. 10.0.0.5:6379 or ray://head:10001 "
                              "(default: $RAY_ADDRESS, else a new Ray instance on this machine).")  # fmt: skip


def _seed_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated whole numbers, e.g. 0,1,2,3,4") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fashionzoo")
def main() -> None:
    """fashionzoo: Fashion-MNIST clothing classifiers, trained, verified and ready to embed."""
    package_log = logging.getLogger("fashionzoo")
    if not any(isinstance(handler, _Notices) for handler in package_log.handlers):
        package_log.addHandler(_Notices())
    package_log.setLevel(logging.INFO)


@main.command("list")
@json_option
@_user_errors
def list_command(as_json: bool) -> None:
    """List every model of the zoo, with every weights tag (cnn-small.mnist)."""
    rows = [entry.summary() for entry in all_entries()]
    if as_json:
        _echo_json(rows)
        return
    header = f"{'name':<22} {'aliases':<28} {'family':<9} {'params':>11}  {'input':<8} {'reported':>8} {'test acc':>8}"
    click.echo(header)
    for row in rows:
        reported = f"{row['reported_accuracy']:.2%}" if row["reported_accuracy"] else "-"
        tested = f"{row['metrics']['accuracy']:.2%}" if row["metrics"] else "no weights"
        shape = "x".join(map(str, row["input_shape"]))
        click.echo(f"{row['name']:<22} {', '.join(row['aliases']):<28} {row['family']:<9} {row['params']:>11,}  "
                   f"{shape:<8} {reported:>8} {tested:>8}")  # fmt: skip


@main.command()
@click.argument("name")
@json_option
@_user_errors
def info(name: str, as_json: bool) -> None:
    """Show a model's architecture, training recipe and measured metrics."""
    entry = get_entry(name)
    summary = entry.summary()
    notes = []
    if entry.unreleased_reason:
        notes.append(f"No checkpoint released: {entry.unreleased_reason}.")
    if entry.needs_backbone_weights:
        notes.append("No trained checkpoint exists yet: this model needs ImageNet backbone weights, which cannot "
                     "be fetched where the zoo is built. Train it with --backbone-weights PATH.")
    if notes:
        summary["note"] = " ".join(notes)
    _import_tensorflow_quietly()  # only when the architecture is shown
    from fashionzoo.models import build

    model = build(entry, **({"backbone_weights": None} if entry.needs_backbone_weights else {}))
    layers = [{"name": lyr.name, "type": type(lyr).__name__, "params": lyr.count_params()} for lyr in model.layers]
    if as_json:
        _echo_json({**summary, "layers": layers})
        return
    click.echo(f"{entry.full_name} ({', '.join(entry.full_aliases)}): {entry.description}")
    click.echo(f"trained on {entry.tag}; classes: {', '.join(entry.classes)}; input {entry.preprocessing.to_json()}")
    click.echo(f"reference {entry.reference}, family {entry.family}, {entry.param_count:,} parameters, "
               f"input {entry.input_shape}")
    for layer in layers:
        click.echo(f"  {layer['name']:<28} {layer['type']:<22} {layer['params']:>10,}")
    click.echo("recipe: " + ", ".join(f"{k}={v}" for k, v in summary["recipe"].items() if v not in (None, "", 0)))
    if entry.weights:
        m = entry.weights.metrics
        click.echo(f"weights: test accuracy {m['accuracy']:.4f}, loss {m['loss']:.4f} on {m['n']:,} official test "
                   "images")
        if entry.weights.photos:
            calibration = entry.weights.photos
            scenes = [(f", {scene} scene", row) for scene, row in calibration.by_scene.items()]
            for which, row in [(" (textured and other scenes)", calibration.offsets), *scenes]:
                offsets = ", ".join(f"{name} {value:+.2f}" for name, value in zip(entry.classes, row, strict=True))
                click.echo(f"photo calibration{which}: {offsets}")
            click.echo(f"uncertain below {calibration.uncertain_below} (docs/photos.md)")
    else:
        click.echo("weights: none released")
    if "note" in summary:
        click.echo("note: " + summary["note"])


@main.command()
@click.argument("name")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the recipe's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Override the recipe's batch size.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Override the recipe's learning rate.")
@click.option("--seed", type=int, help="Override the recipe's seed.")
@dataset_option
@data_dir_option
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: runs/NAME).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last completed epoch.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Train on the first N training images (quick checks).")
@click.option("--backbone-weights", default="imagenet", show_default=True,
              help="Transfer models: a Keras ImageNet no-top weights file, 'imagenet' (Keras downloads them) or "
              "'random' (pipeline checks only: such a run is never released).")  # fmt: skip
@click.option("--fine-tune-epochs", type=click.IntRange(min=0),
              help="Transfer models: override the recipe's fine-tuning epochs (0 skips fine-tuning).")  # fmt: skip
@click.option("--seeds", callback=_seed_list, help="Train once per seed (e.g. 0,1,2,3,4) into OUT/seed-N and "
              "report the spread of the accuracies in OUT/seeds.json.")  # fmt: skip
@engine_option
@address_option
@json_option
@_user_errors
def train(name: str, out: str | None, backbone_weights: str, dataset: str | None, seeds: list[int] | None,
          engine: str, address: str | None, as_json: bool, **options: Any) -> None:  # fmt: skip
    """Train a model (cnn-small, or cnn-small.mnist for its MNIST weights) with its recorded recipe and write
    weights, curves, metrics and a model card."""
    entry = with_tag(name, dataset)
    _import_tensorflow_quietly()
    from fashionzoo.training import train as run_training

    if seeds is not None:
        _sweep(entry.full_name, Path(out or Path("runs") / entry.full_name), seeds, engine, address, as_json,
               {"build_overrides": _backbone_overrides(entry, backbone_weights), **options})  # fmt: skip
        return
    if engine == "ray" and not entry.recipe.search:
        raise FashionZooError(f"{entry.full_name} has no search to distribute; --engine ray trains with --seeds or "
                              "runs a recipe's search (e.g. lenet5-tuned)")  # fmt: skip
    if engine == "ray":
        from fashionzoo.distributed import search_on_ray

        options["score_trials"] = search_on_ray(address, options["device"])
    out_dir = Path(out or Path("runs") / entry.full_name)
    try:
        record = run_training(entry, out_dir, build_overrides=_backbone_overrides(entry, backbone_weights),
                              verbose=0 if as_json else 1, **options)  # Keras' progress goes to stdout
    except (DiskError, OSError) as error:
        if isinstance(error, OSError) and error.errno not in DISK_ERRNOS:
            raise
        where = error if isinstance(error, DiskError) else DiskError(out_dir, error)  # OSError: Keras' history.csv
        raise FashionZooError(f"{where}; the last completed epoch is kept: continue with --resume") from None
    test = record.test
    if as_json:
        _echo_json({"model": record.full_name, "test": test, "val": record.val, "epochs": record.epochs,
                    "wall_time_s": record.wall_time_s, "search": record.search})  # fmt: skip
        return
    click.echo(f"{entry.full_name}: test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f} on {test['n']} "
               f"images; {record.epochs} epoch{'s' if record.epochs != 1 else ''} in {record.wall_time_s:.0f} s; "
               f"written to {out_dir}")  # fmt: skip


def _backbone_overrides(entry: ModelEntry, backbone_weights: str) -> dict[str, Any]:
    """Builder overrides of a transfer model: its backbone weights ('random': a pipeline check, announced)."""
    if not entry.needs_backbone_weights:
        return {}
    if backbone_weights == "random":
        click.echo(f"fashionzoo: training {entry.name} with a RANDOM backbone: a pipeline check, not a usable "
                   "checkpoint", err=True)  # fmt: skip
    return {"backbone_weights": None if backbone_weights == "random" else backbone_weights}


def _sweep(name: str, out: Path, seeds: list[int], engine: str, address: str | None, as_json: bool,
           options: dict[str, Any]) -> None:  # fmt: skip
    """``train --seeds``: one training per seed, here or as Ray Tune trials, and the spread."""
    import functools

    from fashionzoo.sweeps import run_in_process, sweep_seeds

    if options.pop("seed") is not None or options.pop("resume"):
        raise FashionZooError("--seeds replaces --seed, and a sweep cannot --resume; drop those options")
    run_all = run_in_process
    if engine == "ray":
        from fashionzoo.distributed import run_trials

        run_all = functools.partial(run_trials, address=address, device=options["device"], name=f"{name}-seeds")
    summary = sweep_seeds(name, out, seeds, run_all, **options)
    if as_json:
        _echo_json(summary)
        return
    for key in ("val_accuracy", "test_accuracy"):
        s = summary[key]
        click.echo(f"{name} {key.replace('_', ' ')} over {len(seeds)} seeds: mean {s['mean']:.4f}, std {s['std']:.4f}, "
                   f"min {s['min']:.4f}, max {s['max']:.4f}")  # fmt: skip
    click.echo(f"written to {out / 'seeds.json'}")


@main.command("eval")
@click.argument("name")
@click.option("--weights", type=click.Path(dir_okay=False), help="A local .weights.h5 file (default: released).")
@dataset_option
@data_dir_option
@json_option
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the confusion matrix as a PNG.")
@_user_errors
def eval_command(name: str, weights: str | None, dataset: str | None, data_dir: str | None, as_json: bool,
                 plot: str | None) -> None:  # fmt: skip
    """Evaluate a trained model on the official test file of its data set."""
    from fashionzoo.evaluation import evaluate

    entry = with_tag(name, dataset)
    if plot:
        check_can_write(Path(plot))  # before the evaluation, not after
    _import_tensorflow_quietly()
    result = evaluate(entry, weights, data_dir)
    broken = not math.isfinite(result["loss"])  # reported after the figures, with exit status 1
    if plot:
        from fashionzoo.reports import plot_confusion

        plot_confusion(result["confusion_matrix"], entry.classes, Path(plot),
                       f"{entry.full_name}: test accuracy {result['accuracy']:.4f}")  # fmt: skip
    if as_json:
        _echo_json(result)
    else:
        click.echo(f"{result['model']}: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} on "
                   f"{result['n']:,} test images")  # fmt: skip
        for label, accuracy in result["per_class_accuracy"].items():
            click.echo(f"  {label:<12} {accuracy:.4f}" if accuracy is not None else f"  {label:<12} -")
        if result["most_confused"]:
            click.echo("most confused (true -> predicted):")
            for pair in result["most_confused"]:
                click.echo(f"  {pair['true']} -> {pair['predicted']}: {pair['count']}")
    if broken:
        raise FashionZooError(f"{weights or result['model']}: the model's probabilities are not finite (NaN or "
                              "infinity); these weights are broken")  # fmt: skip




@main.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_models", is_flag=True, help="Every model with released weights.")
@json_option
@_user_errors
def download(names: tuple[str, ...], all_models: bool, as_json: bool) -> None:
    """Make released files (weights and ONNX) available offline, verified by SHA-256: the copies shipped in the
    package, else fetched from the Hub into the cache; prints where each one is."""
    from fashionzoo import hub

    if not names and not all_models:
        raise FashionZooError("name a model, or pass --all")
    entries = [e for e in all_entries() if e.weights] if all_models else [get_entry(n) for n in names]
    unreleased = [entry for entry in entries if not entry.weights or not entry.weights.files]
    found = [{"model": entry.full_name, "kind": key, "path": str(hub.resolve(entry, key))}
             for entry in entries for key in ("weights", "onnx") if entry.weights and key in entry.weights.files]
    if as_json:
        _echo_json({"files": found})
    else:
        for file in found:
            click.echo(f"{file['model']} {file['kind']}: {file['path']}")
    if unreleased:
        reasons = "; ".join(f"{e.full_name} ({e.why_unreleased})" for e in unreleased)
        raise FashionZooError(f"no released files to download for: {reasons}; train them with 'fashionzoo train'")


@main.command()
@click.argument("name")
@click.option("--repo-id", required=True, help="Hub repo to upload to, e.g. fashionzoo/cnn.")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), help="Run folder (default: runs/NAME).")
@click.option("--revision", help="Branch to commit to (default: the repo's main branch).")
@click.option("--token", envvar="HF_TOKEN", help="Hub token (default: $HF_TOKEN or the saved login).")
@json_option
@_user_errors
def push(name: str, repo_id: str, run_dir: str | None, revision: str | None, token: str | None, as_json: bool
         ) -> None:  # fmt: skip
    """Upload a trained run (weights, ONNX, card, metrics) to the Hub; prints the commit hash to pin."""
    from fashionzoo import hub, runs

    entry = get_entry(name)
    run = Path(run_dir or Path("runs") / entry.full_name)
    record = runs.read_record(run)
    if record.full_name != entry.full_name:
        raise FashionZooError(f"{run}: a run of {record.full_name}, not {entry.full_name}; pass --run with a run of "
                              f"{entry.full_name}, or push {record.full_name}")  # fmt: skip
    if record.is_random_backbone(entry):
        raise FashionZooError(f"{run}: trained with a random backbone (a pipeline check); train with ImageNet "
                              "backbone weights (--backbone-weights) before publishing")  # fmt: skip
    commit = hub.push(run, repo_id, entry, revision=revision, token=token)
    if as_json:
        _echo_json({"model": entry.full_name, "repo_id": repo_id, "commit": commit, "run": str(run)})
        return
    click.echo(f"{entry.full_name}: uploaded to {repo_id} at commit {commit}; pin it with "
               f"'fashionzoo release {run} --published {record.full_name}={commit}'")  # fmt: skip


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...",
                type=click.Path(file_okay=False, exists=True, path_type=Path))  # fmt: skip
@click.option("--published", multiple=True, metavar="NAME=COMMIT", help="Pin the Hub commit 'push' printed.")
@click.option("--tree", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The fashionzoo source checkout to release into (default: the one installed in editable mode).")
@data_dir_option
@json_option
@_user_errors
def release(run_dirs: tuple[Path, ...], published: tuple[str, ...], tree: Path | None, data_dir: str | None,
            as_json: bool) -> None:  # fmt: skip
    """Maintainers: release finished runs into the package (ONNX with parity, int8, weights.json, model table)."""
    from fashionzoo.release import ReleaseTree, check_release
    from fashionzoo.release import release as release_runs

    pins = dict(item.split("=", 1) for item in published if "=" in item)
    if len(pins) != len(published):
        raise FashionZooError("--published takes NAME=COMMIT, the full 40-digit commit hash 'push' printed, e.g. "
                              "cnn=0123abcd...")  # fmt: skip
    target = ReleaseTree(tree) if tree else ReleaseTree.source_checkout()
    check_release(list(run_dirs), target, pins)  # a wrong --tree, run or pin at once, not after TensorFlow
    _import_tensorflow_quietly()
    released = release_runs(list(run_dirs), target, published=pins, data_dir=data_dir)
    if as_json:
        _echo_json({name: {"metrics": record.metrics, "revision": record.revision,
                           "files": {key: file.filename for key, file in record.files.items()}}
                    for name, record in released.items()})  # fmt: skip
        return
    for name, record in released.items():
        m = record.metrics
        click.echo(f"{name}: released, test accuracy {m['accuracy']:.4f} on {m['n']:,} images, ONNX batch-1 "
                   f"{m['onnx_batch1_p50_ms']:.3f} ms; revision {record.revision or 'not published'}")


@main.command()
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False),
              help="ONNX file to write (default: NAME.onnx, or NAME.int8.onnx with --quantize).")  # fmt: skip
@click.option("--opset", type=click.IntRange(min=9), default=17, show_default=True,
              help="ONNX opset version: 9 up to the newest the installed tf2onnx converts.")
@click.option("--weights", type=click.Path(dir_okay=False), help="A local .weights.h5 file (default: released).")
@click.option("--quantize", type=click.Choice(["int8"]),
              help="Write a static int8 model instead, from the released fp32 ONNX file or a fresh export; "
              "calibrated on training images, refused if it loses over 0.5 points of test accuracy.")  # fmt: skip
@data_dir_option
@json_option
@_user_errors
def export(name: str, out: str | None, opset: int, weights: str | None, quantize: str | None,
           data_dir: str | None, as_json: bool) -> None:  # fmt: skip
    """Export a trained model to ONNX, checked against Keras on the test images before it is written."""
    if out:
        check_can_write(Path(out))  # before minutes of conversion, not after
    _import_tensorflow_quietly()
    from fashionzoo.export import describe, export_int8, export_onnx

    if quantize:
        path = export_int8(name, out, weights=weights, opset=opset, data_dir=data_dir)
    else:
        path = export_onnx(name, out, weights=weights, opset=opset, data_dir=data_dir)
    facts = describe(path)
    if as_json:
        _echo_json({"path": str(path), **facts})
    elif quantize:
        click.echo(f"{path}: {facts['fashionzoo.quantization']}; test accuracy "
                   f"{float(facts['fashionzoo.test_accuracy']):.4f} (fp32 "
                   f"{float(facts['fashionzoo.fp32_test_accuracy']):.4f})")  # fmt: skip
    else:
        click.echo(f"{path}: opset {facts['opset']}, max abs difference from Keras "
                   f"{float(facts['fashionzoo.parity_max_abs_diff']):.2e} on the test images")  # fmt: skip


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGE|DIR|GLOB...")
@click.option("--model", "name", help="Model name or alias (default: the zoo's default model).")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Classes shown per image.")
@json_option
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True,
              help="ONNX Runtime device (cuda needs onnxruntime-gpu).")  # fmt: skip
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), help="A local ONNX file (default: released).")
@click.option("--backend", type=click.Choice(["onnx", "keras"]), default="onnx", show_default=True,
              help="keras: the TensorFlow model, for comparison.")  # fmt: skip
@click.option("--weights", type=click.Path(dir_okay=False), help="Keras backend: a local .weights.h5 file.")
@click.option("--progress/--no-progress", default=None, help="A running count on stderr (default: when a terminal).")
@click.option("--recursive", "-r", is_flag=True, help="Folders: take the images in their subfolders too.")
@click.option("--save-inputs", type=click.Path(file_okay=False),
              help="Write the 28x28 image the model saw for each input under this folder (INPUT.png).")  # fmt: skip
@click.option("--calibrated/--uncalibrated", default=True, show_default=True,
              help="Shift photos' probabilities by the weights' photo calibration (docs/photos.md).")
@click.option("--uncertain-below", type=click.FloatRange(0, 1), default=None,
              help="Mark predictions whose top probability is below this as uncertain (default: chosen for the "
              "model on real photos, see docs/photos.md).")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False), help="Write one row per input (path, label, class_id, "
              "probability, top_k, error) to a .parquet or .jsonl file (or object-store path) and print a summary; "
              "files that fail are rows with an error, and the exit status stays 0.")  # fmt: skip
@engine_option
@address_option
@click.option("--workers", type=click.IntRange(min=1),
              help="Workers decoding images (default: one per CPU core; processes from 256 files on, else "
              "threads); with --engine ray, at most this many "
              "inference actors (default: one per GPU with cuda, else one per CPU of the cluster less one).")
@_user_errors
def predict(inputs: tuple[str, ...], name: str | None, top_k: int, as_json: bool, batch_size: int, device: str,
            onnx_path: str | None, backend: str, weights: str | None, progress: bool | None, recursive: bool,
            save_inputs: str | None, calibrated: bool, uncertain_below: float | None, out: str | None, engine: str,
            address: str | None, workers: int | None) -> None:  # fmt: skip
    """Classify image files, folders of images or glob patterns; exit status 1 if any file failed.

    With --engine ray: one SOURCE (a folder, a glob, a .txt or .parquet list of paths, or an object-store folder
    such as s3://bucket/photos/) classified on a Ray cluster into --out."""
    from fashionzoo.registry import DEFAULT_MODEL
    from fashionzoo.runtime import Classifier, Failure, classify_files, expand_inputs, released_calibration

    name = name or DEFAULT_MODEL
    show_progress = sys.stderr.isatty() if progress is None else progress
    if engine == "ray":
        if len(inputs) != 1 or not out or backend != "onnx":
            raise FashionZooError("--engine ray classifies one SOURCE into --out with the onnx backend")
        if save_inputs:
            raise FashionZooError("--save-inputs is for the single-machine predict (the actors' files stay on their "
                                  "nodes); drop it or --engine ray")  # fmt: skip
        from fashionzoo.distributed import predict as predict_on_ray

        _summary(predict_on_ray(inputs[0], out, address=address, name=name, onnx_path=onnx_path, device=device,
                                top_k=top_k, batch_size=batch_size, workers=workers, progress=show_progress,
                                calibrated=calibrated, uncertain_below=uncertain_below, recursive=recursive),
                 as_json)  # fmt: skip
        return
    if address:
        raise FashionZooError("--address is for --engine ray")
    if backend == "onnx":
        if weights:
            raise FashionZooError("--weights is for --backend keras; pass an ONNX file with --onnx")
        classify = Classifier.from_pretrained(name, onnx_path=onnx_path, device=device, calibrated=calibrated,
                                              spinning=False).classify  # fmt: skip
    else:
        if onnx_path:
            raise FashionZooError("--onnx is for --backend onnx; pass Keras weights with --weights")
        _import_tensorflow_quietly()  # only for the Keras backend
        import tensorflow as tf

        from fashionzoo.devices import keras_device
        from fashionzoo.models import load, predict_probs

        entry = get_entry(name)
        model = load(entry, weights)
        where = keras_device(device)  # --device cuda without a GPU says so, as the ONNX backend does

        calibration = released_calibration(entry, weights is not None, calibrated)

        def keras_probs(x: Any) -> Any:  # uint8 images -> probabilities (numpy arrays)
            with tf.device(where):
                return predict_probs(model, x, batch_size, entry.preprocessing)

        def classify(items: Any, top_k: int, batch_size: int, workers: int | None, uncertain_below: float | None
                     ) -> Any:  # fmt: skip
            return classify_files(items, keras_probs, entry.classes, top_k, batch_size, workers, uncertain_below,
                                  entry.preprocessing.pipeline, calibration)  # fmt: skip

    results = classify(expand_inputs(inputs, recursive), top_k=top_k, batch_size=batch_size, workers=workers,
                       uncertain_below=uncertain_below)  # fmt: skip
    if save_inputs:
        results = _saving_inputs(results, save_inputs)
    if out:
        from fashionzoo import predictions

        _summary(predictions.write(predictions.tables(results, batch_size), out, show_progress), as_json)
        return
    failed = False
    count = 0
    for count, result in enumerate(results, 1):
        if show_progress and count % batch_size == 0:
            click.echo(f"fashionzoo: {count} files done", err=True)
        if isinstance(result, Failure):
            failed = True
            click.echo(f"fashionzoo: error: {_printable(result.error)}", err=True)
            if as_json:  # a line for every input, in order: a consumer matches them up by ``file``
                _echo_json(result.as_dict())
            continue
        if as_json:
            _echo_json(result.as_dict())
        else:
            others = "".join(f", {_printable(label)} {p:.2f}" for label, p in result.top_k[1:])
            flag = " [uncertain]" if result.uncertain else ""
            click.echo(_printable(f"{result.file}: {result.label}") + f" ({result.probability:.2f}){others}{flag}")
    if show_progress and (count % batch_size or not count):  # not already said by the loop
        click.echo(f"fashionzoo: {count} files done", err=True)
    if failed:
        sys.exit(1)


def _saving_inputs(results: Iterable[Prediction | Failure], folder: str) -> Iterator[Prediction | Failure]:
    """``results`` unchanged, each prediction's 28x28 model input written under ``folder`` as it passes."""
    from fashionzoo.runtime import Prediction

    for result in results:
        if isinstance(result, Prediction):
            result.save_model_input(folder)
        yield result


def _summary(summary: dict[str, Any], as_json: bool) -> None:
    """The closing line of ``predict --out``."""
    if as_json:
        _echo_json(summary)
        return
    where = f" (Ray: {summary['workers']} inference actors, {summary['nodes']} nodes)" if "workers" in summary else ""
    images = f"{summary['images']:,} image{'' if summary['images'] == 1 else 's'}"
    click.echo(f"fashionzoo: {images}, {summary['failures']:,} failed, {summary['seconds']:.1f} s, "
               f"{summary['images_per_s'] or 0:,.0f} images/s{where}; written to {summary['out']}")  # fmt: skip


def _batch_sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated whole numbers, e.g. 1,8,64") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: give at least one batch size, each 1 or more")
    return sizes


def _bench_status(done: int, total: int, label: str) -> None:
    """A one-line progress display on stderr, cleared at the end."""
    click.echo("\r\033[K" + (f"bench [{done}/{total}] {label}" if done < total else ""), err=True, nl=False)


def _bench_table(report: dict[str, Any]) -> None:
    """The human output of ``bench``: machine, one row per (model, backend, batch size), each cell's winner, then
    per-model facts."""
    m, peak = report["machine"], report["machine"]["measured_peak"]
    busy = m["others_cpu_share"]
    others = f"; other processes used {busy:.0%} of the CPUs meanwhile" if busy is not None else ""
    click.echo(f"{m['cpu']}, {m['cpu_physical_cores']} cores, flags {' '.join(m['cpu_flags']) or '-'}; onnxruntime "
               f"{m['onnxruntime']} ({', '.join(m['onnxruntime_providers'])}), TensorFlow {m['tensorflow']}{others}")
    click.echo(f"{'model':<16} {'backend':<14} {'batch':>5} {'p50 ms':>9} {'p99 ms':>9} {'images/s':>10} "
               f"{'x call':>7}")  # fmt: skip
    for r in report["results"]:
        if "missing" in r:
            click.echo(f"{r['model']:<16} {r['backend']:<14} {r['batch_size']:>5} missing: {r['missing']}")
            continue
        click.echo(f"{r['model']:<16} {r['backend']:<14} {r['batch_size']:>5} {r['p50_ms']:>9.3f} "
                   f"{r['p99_ms']:>9.3f} {r['images_per_s']:>10,.0f} {r['speedup_vs_call']:>7.2f}")  # fmt: skip
    for cell in report["cells"]:
        versus = (f"; zoo {cell['zoo_vs_peer']:.2f}x the speed of {cell['fastest_peer']}" if cell["fastest_peer"]
                  else "")  # fmt: skip
        click.echo(f"{cell['model']} batch {cell['batch_size']}: fastest {cell['winner']}{versus}")
    for name, facts in report["models"].items():
        best, int8 = facts["best_fp32"], facts["int8"]
        click.echo(f"{name}: {facts['flops_per_image'] / 1e6:.2f} MFLOPs/image; best fp32: {best['backend']} at "
                   f"batch {best['batch_size']}, {best['gflops']:.1f} GFLOP/s = {best['fraction_of_peak']:.0%} of "
                   f"the {peak['gflops']:.0f} GFLOP/s measured peak ({peak['how']})")  # fmt: skip
        click.echo(f"{name}: int8 file {int8['size_ratio']:.1f}x smaller, test accuracy {int8['test_accuracy']:.4f} "
                   f"(fp32 {facts['fp32']['test_accuracy']:.4f})")


@main.command()
@click.argument("names", nargs=-1)
@click.option("--batch-sizes", default="1,64,1024", show_default=True, callback=_batch_sizes,
              help="Comma-separated batch sizes.")  # fmt: skip
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime and TensorFlow threads (default: theirs).")
@click.option("--repeats", type=click.IntRange(min=1), help="Most timed calls per backend and cell (default: the "
              "time budget decides).")  # fmt: skip
@click.option("--seconds", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Time budget per model and batch size, shared by the backends in interleaved rounds (at least 3 "
                   "rounds).")  # fmt: skip
@click.option("--weights", type=click.Path(dir_okay=False), help="A local .weights.h5 file (one NAME only).")
@data_dir_option
@json_option
@click.option("--out", type=click.Path(dir_okay=False), help="Also write machine info, models and results as JSON.")
@_user_errors
def bench(names: tuple[str, ...], batch_sizes: tuple[int, ...], device: str, threads: int | None, repeats: int | None,
          seconds: float, weights: str | None, data_dir: str | None, as_json: bool, out: str | None
          ) -> None:  # fmt: skip
    """Time Keras, ONNX Runtime (plain and the zoo's path, fp32 and int8), LiteRT and OpenVINO side by side, per
    batch size, in interleaved rounds (LiteRT and OpenVINO: pip install "fashionzoo[bench]")."""
    from fashionzoo._files import atomic_open
    from fashionzoo.registry import DEFAULT_MODEL

    names = names or (DEFAULT_MODEL,)
    if weights and len(names) != 1:
        raise FashionZooError("--weights needs exactly one model NAME")
    _import_tensorflow_quietly()
    from fashionzoo.benchmark import run

    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(atomic_open(out)) if out else None  # a file it cannot write fails here, first
        report = run(names, batch_sizes, device, threads, repeats=repeats, max_seconds=seconds,
                     progress=_bench_status if sys.stderr.isatty() else None,
                     weights={names[0]: weights} if weights else None, data_dir=data_dir)  # fmt: skip
        if handle:
            json.dump(report, handle, indent=2)
    if as_json:
        _echo_json(report["results"])
    else:
        _bench_table(report)
