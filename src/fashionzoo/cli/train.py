"""``train``."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from fashionzoo.cli.common import (
    SEEDS,
    FiniteFloatRange,
    address_option,
    data_dir_option,
    dataset_option,
    device_option,
    echo_json,
    engine_option,
    import_tensorflow_quietly,
    json_option,
    main,
    run_folder,
    user_errors,
)
from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import DISK_ERRNOS, DiskError
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import with_tag
from fashionzoo.training.runs import claimed


def _seed_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """The ``--seeds`` callback: comma-separated whole numbers."""
    if value is None:
        return None
    try:
        seeds = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated whole numbers, e.g. 0,1,2,3,4") from None
    return [SEEDS.convert(seed, param, ctx) for seed in seeds]


@main.command()
@click.argument("name")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the recipe's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Override the recipe's batch size.")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), help="Override the recipe's learning rate.")
@click.option("--seed", type=SEEDS, help="Override the recipe's seed.")
@dataset_option
@data_dir_option
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: runs/NAME).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last completed epoch.")
@device_option()
@click.option("--limit", type=click.IntRange(min=1), help="Train on the first N training images (quick checks).")
@click.option(
    "--backbone-weights",
    default="imagenet",
    show_default=True,
    help="Transfer models: a Keras ImageNet no-top weights file, 'imagenet' (Keras downloads them) or "
    "'random' (pipeline checks only: such a run is never released).",
)
@click.option(
    "--fine-tune-epochs",
    type=click.IntRange(min=0),
    help="Transfer models: override the recipe's fine-tuning epochs (0 skips fine-tuning).",
)
@click.option(
    "--seeds",
    callback=_seed_list,
    help="Train once per seed (e.g. 0,1,2,3,4) into OUT/seed-N and "
    "report the spread of the accuracies in OUT/seeds.json.",
)
@engine_option
@address_option
@json_option
@user_errors
def train(
    name: str,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    seed: int | None,
    dataset: str | None,
    data_dir: str | None,
    out: str | None,
    resume: bool,
    device: str,
    limit: int | None,
    backbone_weights: str,
    fine_tune_epochs: int | None,
    seeds: list[int] | None,
    engine: str,
    address: str | None,
    as_json: bool,
) -> None:
    """Train any model of the zoo with its recorded recipe; write weights, curves, metrics and a model card.

    NAME is a model name or alias (lenet5, cnn-small, zoo-resnet...), with a tag for other weights of the same
    architecture (cnn-small.mnist: its MNIST weights)."""
    entry = with_tag(name, dataset)
    out_dir = run_folder(out, entry)
    if seeds is not None and (seed is not None or resume):
        raise FashionZooError("--seeds replaces --seed, and a sweep cannot --resume; drop those options")
    if seeds is None and engine == "ray" and not entry.recipe.search:
        raise FashionZooError(
            f"{entry.full_name} has no search to distribute; --engine ray trains with --seeds or "
            "runs a recipe's search (e.g. lenet5-tuned)"
        )
    options: dict[str, Any] = {  # what a single run and every run of a sweep share
        "build_overrides": _backbone_overrides(entry, backbone_weights),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "data_dir": data_dir,
        "device": device,
        "limit": limit,
        "fine_tune_epochs": fine_tune_epochs,
    }
    with _removed_if_left_empty(out_dir), claimed(out_dir):  # a user's folder or a busy one refused at once
        import_tensorflow_quietly()
        if seeds is not None:
            _sweep(entry.full_name, out_dir, seeds, engine, address, as_json, options)
        else:
            _single_run(entry, out_dir, seed, resume, engine, address, as_json, options)


def _single_run(
    entry: ModelEntry,
    out_dir: Path,
    seed: int | None,
    resume: bool,
    engine: str,
    address: str | None,
    as_json: bool,
    options: dict[str, Any],
) -> None:
    """One training (a recipe's search as Ray Tune trials with ``engine`` ray), and its result line."""
    from fashionzoo.training.train import train as run_training

    score_trials = None
    if engine == "ray":
        from fashionzoo.distributed.tune import search_on_ray

        score_trials = search_on_ray(address, options["device"])
    try:
        record = run_training(
            entry, out_dir, seed=seed, resume=resume, verbose=0 if as_json else 1, score_trials=score_trials, **options
        )  # Keras' progress goes to stdout
    except (DiskError, OSError) as error:
        if isinstance(error, OSError) and error.errno not in DISK_ERRNOS:
            raise
        where = error if isinstance(error, DiskError) else DiskError(out_dir, error)  # OSError: Keras' history.csv
        raise FashionZooError(f"{where}; the last completed epoch is kept: continue with --resume") from None
    test = record.test
    if as_json:
        echo_json(
            {
                "model": record.full_name,
                "test": test,
                "val": record.val,
                "epochs": record.epochs,
                "wall_time_s": record.wall_time_s,
                "search": record.search,
            }
        )
        return
    click.echo(
        f"{entry.full_name}: test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f} on {test['n']} "
        f"images; {record.epochs} epoch{'s' if record.epochs != 1 else ''} in {record.wall_time_s:.0f} s; "
        f"written to {out_dir}"
    )


def _backbone_overrides(entry: ModelEntry, backbone_weights: str) -> dict[str, Any]:
    """Builder overrides of a transfer model: its backbone weights ('random': a pipeline check, announced)."""
    if not entry.needs_backbone_weights:
        return {}
    if backbone_weights == "random":
        click.echo(
            f"fashionzoo: training {entry.name} with a RANDOM backbone: a pipeline check, not a usable checkpoint",
            err=True,
        )
    return {"backbone_weights": None if backbone_weights == "random" else backbone_weights}


def _sweep(
    name: str, out: Path, seeds: list[int], engine: str, address: str | None, as_json: bool, options: dict[str, Any]
) -> None:
    """``train --seeds``: one training per seed, here or as Ray Tune trials, and the spread."""
    from fashionzoo.training.seeds import run_in_process, sweep_seeds

    run_all = run_in_process
    if engine == "ray":
        from fashionzoo.distributed.tune import run_trials

        run_all = functools.partial(run_trials, address=address, device=options["device"], name=f"{name}-seeds")
    summary = sweep_seeds(name, out, seeds, run_all, **options)
    if as_json:
        echo_json(summary)
        return
    for key in ("val_accuracy", "test_accuracy"):
        s = summary[key]
        click.echo(
            f"{name} {key.replace('_', ' ')} over {len(seeds)} seeds: mean {s['mean']:.4f}, std {s['std']:.4f}, "
            f"min {s['min']:.4f}, max {s['max']:.4f}"
        )
    click.echo(f"written to {out / 'seeds.json'}")


@contextlib.contextmanager
def _removed_if_left_empty(folder: Path) -> Iterator[None]:
    """Run the block; if it fails, remove the folders it created for ``folder`` (``folder`` and missing parents)
    that hold no file: a failed training leaves no empty run folder behind, and never removes one it found."""
    created = list(itertools.takewhile(lambda path: not path.exists(), [folder, *folder.parents]))
    try:
        yield
    except BaseException:
        if created:
            for path, _, _ in os.walk(created[-1], topdown=False):  # everything in it is this command's
                with contextlib.suppress(OSError):  # not empty: a file was written
                    os.rmdir(path)
        raise
