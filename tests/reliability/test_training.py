"""Training (``fashionzoo.training``) on a full disk: the last whole backup is kept and the run resumes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import assert_cli_error, everything_under, run_cli

pytestmark = pytest.mark.slow  # trains, twice, in fresh processes


def test_training_on_a_full_disk_keeps_the_last_backup_and_resumes(full_disk: Path, make_idx_folder) -> None:
    """1 MiB holds one lenet5 backup (weights + Adam state, 0.57 MB) but not a second one beside it."""
    import h5py

    data_dir = make_idx_folder(sizes={"train": 30, "test": 20}).path
    run = full_disk / "run"
    train = ["train", "lenet5", "--epochs", "2", "--limit", "100", "--data-dir", str(data_dir), "--out", str(run)]

    result = run_cli(*train)

    print(f"full disk: exit {result.returncode}, {result.stderr.splitlines()[-1]}")  # quoted in docs/reliability.md
    assert_cli_error(result, "latest.weights.h5", "No space left on device", "--resume")
    assert everything_under(run) == ["backup/latest.weights.h5", "history.csv", "state.json"]  # no temporary file
    with h5py.File(run / "backup" / "latest.weights.h5", "r") as backup:  # the epoch-1 backup, whole
        assert backup["layers/dense/vars/0"].shape == (256, 120) and "optimizer" in backup
        assert backup.attrs["fashionzoo_epochs_done"] == 1

    grown = subprocess.run(["mount", "-o", "remount,size=16m", str(full_disk)], capture_output=True, text=True)
    assert grown.returncode == 0, grown.stderr
    resumed = run_cli(*train, "--resume")

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()] == ["epoch", "0", "1"]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2 and not (run / "backup").exists()
