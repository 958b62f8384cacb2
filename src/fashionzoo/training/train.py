"""``fashionzoo train``: one entry point for single runs and ensembles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import with_tag
from fashionzoo.training import runs
from fashionzoo.training.ensemble import train_ensemble
from fashionzoo.training.runs import RunRecord
from fashionzoo.training.search import ScoreTrials
from fashionzoo.training.single import train_single


def train(
    model: str | ModelEntry,
    out_dir: str | os.PathLike,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    dataset: str | None = None,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str = "auto",
    limit: int | None = None,
    fine_tune_epochs: int | None = None,
    build_overrides: dict[str, Any] | None = None,
    verbose: int = 1,
    score_trials: ScoreTrials | None = None,
) -> RunRecord:
    """Train a registry model (an entry or a name: ``cnn-small.mnist``, or ``cnn-small`` with ``dataset="mnist"``)
    with its recipe, overrides recorded, and write the run folder (:mod:`fashionzoo.training.runs`), held by this
    process alone for the run (:func:`~fashionzoo.training.runs.claimed`); returns its record.
    ``score_trials`` runs the trainings of a recipe's search (default: in this process)."""
    entry = with_tag(model, dataset)
    overrides = {
        k: v
        for k, v in {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "fine_tune_epochs": fine_tune_epochs,
        }.items()
        if v is not None
    }
    out = Path(out_dir)
    with runs.claimed(out):  # a folder of the user's refused; a second run into it refused at once
        if entry.builder == "ensemble":
            return train_ensemble(
                entry, out, overrides, resume=resume, data_dir=data_dir, device=device, limit=limit, verbose=verbose
            )
        return train_single(
            entry,
            out,
            overrides,
            resume=resume,
            data_dir=data_dir,
            device=device,
            limit=limit,
            build_overrides=build_overrides,
            verbose=verbose,
            score_trials=score_trials,
        )
