"""``list``, ``info``, ``download``, ``eval``, ``export``."""

from __future__ import annotations

import math
from pathlib import Path

import click

from fashionzoo.cli.common import (
    data_dir_option,
    dataset_option,
    echo_json,
    import_tensorflow_quietly,
    json_option,
    main,
    user_errors,
)
from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import check_can_write
from fashionzoo.registry.lookup import all_entries, get_entry, with_tag


@main.command("list")
@json_option
@user_errors
def list_command(as_json: bool) -> None:
    """List every model of the zoo, with every weights tag (cnn-small.mnist)."""
    rows = [entry.summary() for entry in all_entries()]
    if as_json:
        echo_json(rows)
        return
    click.echo(
        f"{'name':<22} {'aliases':<28} {'family':<9} {'params':>11}  {'input':<8} {'reported acc':>12}  "
        f"{'test acc':>10}"
    )
    for row in rows:
        reported = f"{row['reported_accuracy']:.2%}" if row["reported_accuracy"] else "-"
        tested = f"{row['metrics']['accuracy']:.2%}" if row["metrics"] else "no weights"
        shape = "x".join(map(str, row["input_shape"]))
        click.echo(
            f"{row['name']:<22} {', '.join(row['aliases']):<28} {row['family']:<9} {row['params']:>11,}  "
            f"{shape:<8} {reported:>12}  {tested:>10}"
        )


@main.command()
@click.argument("name")
@json_option
@user_errors
def info(name: str, as_json: bool) -> None:
    """Show a model's architecture, training recipe and measured metrics."""
    entry = get_entry(name)
    summary = entry.summary()
    notes = []
    if entry.unreleased_reason:
        notes.append(f"No checkpoint released: {entry.unreleased_reason}.")
    if entry.needs_backbone_weights:
        notes.append(
            "No trained checkpoint exists yet: this model needs ImageNet backbone weights, which cannot "
            "be fetched where the zoo is built. Train it with --backbone-weights PATH."
        )
    if notes:
        summary["note"] = " ".join(notes)
    import_tensorflow_quietly()  # only when the architecture is shown
    from fashionzoo.models.builders import build

    model = build(entry, **({"backbone_weights": None} if entry.needs_backbone_weights else {}))
    layers = [{"name": lyr.name, "type": type(lyr).__name__, "params": lyr.count_params()} for lyr in model.layers]
    if as_json:
        echo_json({**summary, "layers": layers})
        return
    click.echo(f"{entry.full_name} ({', '.join(entry.full_aliases)}): {entry.description}")
    click.echo(f"trained on {entry.tag}; classes: {', '.join(entry.classes)}; input {entry.input_spec.to_json()}")
    click.echo(
        f"reference {entry.reference}, family {entry.family}, {entry.param_count:,} parameters, "
        f"input {entry.input_shape}"
    )
    for layer in layers:
        click.echo(f"  {layer['name']:<28} {layer['type']:<22} {layer['params']:>10,}")
    click.echo("recipe: " + ", ".join(f"{k}={v}" for k, v in summary["recipe"].items() if v not in (None, "", 0)))
    if entry.weights:
        m = entry.weights.metrics
        click.echo(
            f"weights: test accuracy {m['accuracy']:.4f}, loss {m['loss']:.4f} on {m['n']:,} official test images"
        )
        if entry.weights.photo_calibration:
            calibration = entry.weights.photo_calibration
            scenes = [(scene, f", {scene} scene", row) for scene, row in calibration.by_scene.items()]
            for scene, which, row in [("", " (textured and other scenes)", calibration.offsets), *scenes]:
                offsets = ", ".join(f"{name} {value:+.2f}" for name, value in zip(entry.classes, row, strict=True))
                mixed = f" (after a {len(row)}x{len(row)} mixing matrix)" if scene in calibration.mixing else ""
                click.echo(f"photo calibration{which}: {offsets}{mixed}")
            click.echo(f"uncertain below {calibration.uncertain_below} (docs/photos.md)")
    else:
        click.echo("weights: none released")
    if "note" in summary:
        click.echo("note: " + summary["note"])


@main.command("eval")
@click.argument("name")
@click.option("--weights", type=click.Path(dir_okay=False), help="A local .weights.h5 file (default: released).")
@dataset_option
@data_dir_option
@json_option
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the confusion matrix as a PNG.")
@user_errors
def eval_command(
    name: str, weights: str | None, dataset: str | None, data_dir: str | None, as_json: bool, plot: str | None
) -> None:
    """Evaluate a trained model on the official test file of its data set."""
    from fashionzoo.models.evaluation import evaluate
    from fashionzoo.publish import hub

    entry = with_tag(name, dataset)
    if weights is not None:
        hub.released_file(entry, "weights", weights)  # a wrong path in one line, before TensorFlow's seconds
    if plot:
        check_can_write(Path(plot))  # before the evaluation, not after
    import_tensorflow_quietly()
    result = evaluate(entry, weights, data_dir)
    broken = not math.isfinite(result["loss"])  # reported after the figures, with exit status 1
    if plot:
        from fashionzoo.publish.reports import plot_confusion

        plot_confusion(
            result["confusion_matrix"],
            entry.classes,
            Path(plot),
            f"{entry.full_name}: test accuracy {result['accuracy']:.4f}",
        )
    if as_json:
        echo_json(result)
    else:
        click.echo(
            f"{result['model']}: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} on "
            f"{result['n']:,} test images"
        )
        for label, accuracy in result["per_class_accuracy"].items():
            click.echo(f"  {label:<12} {accuracy:.4f}" if accuracy is not None else f"  {label:<12} -")
        if result["most_confused"]:
            click.echo("most confused (true -> predicted):")
            for pair in result["most_confused"]:
                click.echo(f"  {pair['true']} -> {pair['predicted']}: {pair['count']}")
    if broken:
        raise FashionZooError(
            f"{weights or result['model']}: the model's probabilities are not finite (NaN or "
            "infinity); these weights are broken"
        )


@main.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_models", is_flag=True, help="Every model with released weights.")
@json_option
@user_errors
def download(names: tuple[str, ...], all_models: bool, as_json: bool) -> None:
    """Make released files (weights and ONNX) available offline, verified by SHA-256: the copies shipped in the
    package, else fetched from the Hub into the cache; prints where each one is."""
    from fashionzoo.publish import hub

    if not names and not all_models:
        raise FashionZooError("name a model, or pass --all")
    entries = [e for e in all_entries() if e.weights] if all_models else [get_entry(n) for n in names]
    unreleased = [entry for entry in entries if not entry.weights or not entry.weights.files]
    found = [
        {"model": entry.full_name, "kind": key, "path": str(hub.released_file(entry, key))}
        for entry in entries
        for key in ("weights", "onnx")
        if entry.weights and key in entry.weights.files
    ]
    if as_json:
        echo_json({"files": found})
    else:
        for file in found:
            click.echo(f"{file['model']} {file['kind']}: {file['path']}")
    if unreleased:
        reasons = "; ".join(f"{e.full_name} ({e.why_unreleased})" for e in unreleased)
        raise FashionZooError(f"no released files to download for: {reasons}; train them with 'fashionzoo train'")


@main.command()
@click.argument("name")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="ONNX file to write (default: NAME.onnx, or NAME.int8.onnx with --quantize).",
)
@click.option(
    "--opset",
    type=click.IntRange(min=9),
    default=17,
    show_default=True,
    help="ONNX opset version: 9 up to the newest the installed tf2onnx converts.",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="A local .weights.h5 file (default: released).")
@click.option(
    "--quantize",
    type=click.Choice(["int8"]),
    help="Write a static int8 model instead, from the released fp32 ONNX file or a fresh export; "
    "calibrated on training images, refused if it loses over 0.5 points of test accuracy.",
)
@data_dir_option
@json_option
@user_errors
def export(
    name: str,
    out: str | None,
    opset: int,
    weights: str | None,
    quantize: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Export a trained model to ONNX, checked against Keras on the test images before it is written."""
    if out:
        check_can_write(Path(out))  # before minutes of conversion, not after
    import_tensorflow_quietly()
    from fashionzoo.publish.export import describe, export_int8, export_onnx

    if quantize:
        path = export_int8(name, out, weights=weights, opset=opset, data_dir=data_dir)
    else:
        path = export_onnx(name, out, weights=weights, opset=opset, data_dir=data_dir)
    facts = describe(path)
    if as_json:
        echo_json({"path": str(path), **facts})
    elif quantize:
        click.echo(
            f"{path}: {facts['fashionzoo.quantization']}; test accuracy "
            f"{float(facts['fashionzoo.test_accuracy']):.4f} (fp32 "
            f"{float(facts['fashionzoo.fp32_test_accuracy']):.4f})"
        )
    else:
        click.echo(
            f"{path}: opset {facts['opset']}, max abs difference from Keras "
            f"{float(facts['fashionzoo.parity_max_abs_diff']):.2e} on the test images"
        )
