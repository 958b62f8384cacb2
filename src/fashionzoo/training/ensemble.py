"""Training an ensemble: each member an ordinary run under ``members/seed-N``."""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import atomic_open, sha256_file
from fashionzoo.models.builders import build
from fashionzoo.models.loading import load as load_trained
from fashionzoo.publish.reports import read_history, write_run_figures
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import with_tag
from fashionzoo.training import runs
from fashionzoo.training.fit import check_recipe, distribution_strategy, load_splits, log
from fashionzoo.training.resume import write_run_weights
from fashionzoo.training.runs import RunRecord
from fashionzoo.training.single import measure_run, train_single


def _write_mean_history(histories: list[dict[str, list[float]]], path: Path) -> None:
    """``history.csv`` of an ensemble: its members' histories averaged epoch by epoch."""
    columns, epochs = list(histories[0]), min(len(history["epoch"]) for history in histories)
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for epoch in range(epochs):
            writer.writerow(
                [
                    int(histories[0]["epoch"][epoch])
                    if column == "epoch"
                    else float(np.mean([history[column][epoch] for history in histories]))
                    for column in columns
                ]
            )


def train_ensemble(
    entry: ModelEntry,
    out: Path,
    overrides: dict[str, Any],
    *,
    resume: bool,
    data_dir: str | os.PathLike | None,
    device: str,
    limit: int | None,
    verbose: int,
) -> RunRecord:
    """Train each member of an ensemble entry (builder ``ensemble``) into ``out/members/seed-N`` with the member's
    recipe and ``overrides``, then measure the ensemble of their weights and write the run folder. An ensemble whose
    recipe starts from a released ensemble fine-tunes each member with that recipe instead, from that ensemble's
    member of the same seed. With ``resume``, a finished member (its record, no ``backup/``) is kept when its recipe
    and data match, and an interrupted one continues. The history is the members' mean, epoch by epoch."""
    if "seed" in overrides:
        raise FashionZooError(
            f"{entry.full_name}: its members' seeds are the entry's ({entry.build_kwargs['seeds']}); "
            "drop --seed / --seeds"
        )
    member = with_tag(entry.build_kwargs["member"], entry.tag)
    fine_tuning = bool(entry.recipe.start_from)  # its own recipe says how its members are fine-tuned
    recipe = (entry.recipe if fine_tuning else member.recipe.replace(notes=entry.recipe.notes)).replace(**overrides)
    check_recipe(entry.full_name, recipe)
    runs.prepare_run_folder(out, runs.MEMBERS, resume)  # a fresh run retrains every member
    _, device_used = distribution_strategy(device)
    splits = load_splits(entry, recipe, data_dir, limit)
    data_files = splits.files
    model = build(entry)
    histories, wall_time, resumed_at = [], 0.0, []
    for seed in entry.build_kwargs["seeds"]:
        folder = out / runs.MEMBERS / f"seed-{seed}"
        member_recipe = recipe.replace(seed=seed, start_member=f"seed_{seed}" if recipe.start_from else None)
        wanted = runs.recipe_for_resume(member_recipe)
        if resume and (folder / runs.METRICS).is_file() and not (folder / runs.BACKUP).is_dir():
            record = runs.read_record(folder)
            if (record.full_name, runs.recipe_for_resume(record.recipe), record.data_files, record.limit) != (
                member.full_name,
                wanted,
                data_files,
                limit,
            ) or not record.measured(folder / record.weights_file):
                raise FashionZooError(
                    f"{folder}: this finished member was trained with another model, recipe, "
                    "data or --limit, or its weights file is not the one it measured; delete it, or "
                    "train the ensemble without --resume"
                )
        else:
            log.info("%s: member seed %d into %s", entry.full_name, seed, folder)
            record = train_single(
                dataclasses.replace(member, recipe=member_recipe),
                folder,
                {**overrides, "seed": seed},
                resume=resume and (folder / runs.BACKUP).is_dir(),
                data_dir=data_dir,
                device=device,
                limit=limit,
                build_overrides=None,
                verbose=verbose,
                score_trials=None,
                splits=splits,
            )
        trained = load_trained(member, folder / record.weights_file, test_time_flip=False)
        model.get_layer(f"seed_{seed}").set_weights(trained.get_weights())
        histories.append(read_history(folder / runs.HISTORY))
        wall_time += record.wall_time_s
        resumed_at += record.resumed_at or []
    _write_mean_history(histories, out / runs.HISTORY)
    weights_path = write_run_weights(model, out, entry)
    record = measure_run(
        entry,
        model,
        recipe,
        overrides,
        splits,
        search=None,
        build_kwargs=dict(entry.build_kwargs),
        wall_time=wall_time,
        limit=limit,
        device=device_used,
        weights_file=weights_path.name,
    ).replace(weights_sha256=sha256_file(weights_path), resumed_at=resumed_at or None)
    runs.write_record(out, record)
    write_run_figures(out, entry, record)
    return record
