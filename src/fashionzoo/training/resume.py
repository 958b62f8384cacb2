"""Resumable training: atomic per-epoch backups, the run state, stopping on non-finite loss."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.core.files import atomic_open, atomic_path
from fashionzoo.registry.entry import ModelEntry


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops at the first non-finite loss, before the epoch's backup can overwrite the last good one."""

    def __init__(self, backup: Path) -> None:
        super().__init__()
        self.backup = backup

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise FashionZooError(
                f"the loss became {float(loss)} (batch {batch + 1}); train again with a lower --lr "
                f"(the last completed epoch is kept in {self.backup})"
            )


class AtomicBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with each backup written whole, in one file, and renamed over the last one.

    Keras writes ``latest.weights.h5`` in place (a full disk left it truncated and the run could not resume) and
    the completed epoch in a second file: a run killed between the two resumed one epoch too early or too late,
    training an epoch twice or skipping one. Here the epoch is an attribute of the weights file, written to a
    temporary file and renamed: the previous backup stays whole until the new one is. A backup that cannot be read
    is a one-line error. ``on_resume`` is told the epoch a resumed run continues from."""

    EPOCHS_DONE = "fashionzoo_epochs_done"

    def __init__(self, backup_dir: str, on_resume: Callable[[int], None]) -> None:
        super().__init__(backup_dir, delete_checkpoint=False)  # kept until the run is complete: a crash in a later
        self.on_resume = on_resume  # phase still resumes

    def _save_model(self) -> None:  # Keras' hook for writing one backup
        with atomic_path(self._weights_path, suffix=".weights.h5") as weights:
            self.model.save_weights(weights)
            with h5py.File(weights, "a") as file:
                file.attrs[self.EPOCHS_DONE] = self._current_epoch

    def _load_model(self) -> None:  # Keras' hook for reading the backup, if any, when training begins
        super()._load_model()  # the weights, and the epoch of a backup written before the attribute existed
        if os.path.exists(self._weights_path):
            with h5py.File(self._weights_path, "r") as file:
                if self.EPOCHS_DONE in file.attrs:
                    self.model._initial_epoch = int(file.attrs[self.EPOCHS_DONE])
            epoch = self.model._initial_epoch
            if epoch is not None and epoch < self.params.get("epochs", epoch + 1):  # this phase has work left
                self.on_resume(epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        super().on_train_end(logs)
        self.model._initial_epoch = None  # Keras keeps it: a later fit (the fine-tuning phase) would start there

    def on_train_begin(self, logs: dict | None = None) -> None:
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError) as error:
            raise FashionZooError(
                f"{self._weights_path}: the backup cannot be read ({reason(error, first_line=True)}"
                "); train again without --resume"
            ) from None


class RunState(keras.callbacks.Callback):
    """Keeps ``state.json`` (completed epochs, accumulated wall time, the epochs resumed from) in step with the
    backup."""

    def __init__(self, path: Path, previous: dict[str, Any], run: dict[str, Any]) -> None:
        super().__init__()
        self.path, self.run, self.started = path, run, time.monotonic()
        self.elapsed: float = previous.get("wall_time_s", 0.0)
        self.resumed_at: list[int] = list(previous.get("resumed_at", []))

    def total(self) -> float:
        return self.elapsed + time.monotonic() - self.started

    def resumed(self, epoch: int) -> None:
        self.resumed_at.append(epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        with atomic_open(self.path) as handle:
            json.dump(
                {"epochs_done": epoch + 1, "wall_time_s": self.total(), "resumed_at": self.resumed_at, **self.run},
                handle,
            )


def strip_optimizer_state(path: Path) -> None:
    """Rewrite a Keras ``.weights.h5`` file without its optimizer group (a third of the size), atomically."""
    with h5py.File(path, "r") as source:
        if "optimizer" not in source:
            return
        with atomic_path(path, suffix=".weights.h5") as tmp, h5py.File(tmp, "w") as target:
            for key in source:
                if key != "optimizer":
                    source.copy(source[key], target, key)
            target.attrs.update(source.attrs)


def write_run_weights(model: keras.Model, out: Path, entry: ModelEntry) -> Path:
    """Write the run's weights file (``<full name>.weights.h5``) atomically, without optimizer state."""
    path = out / f"{entry.full_name}.weights.h5"
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    strip_optimizer_state(path)
    return path


def dedupe_history(path: Path) -> None:
    """A resumed run may log an epoch twice (killed between logging and backup): keep the last row."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = {line.split(",", 1)[0]: line for line in lines[1:]}
    with atomic_open(path) as handle:
        handle.write("\n".join([lines[0], *rows.values()]) + "\n")
