"""Training (``fashionzoo.training``) on a full disk: the last whole backup is kept and the run resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CLI_ENV, assert_cli_error, everything_under, run_cli, wait_for

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
    assert everything_under(run) == [".fashionzoo-run", "backup/latest.weights.h5", "history.csv", "state.json"]
    with h5py.File(run / "backup" / "latest.weights.h5", "r") as backup:  # the epoch-1 backup, whole
        assert backup["layers/dense/vars/0"].shape == (256, 120) and "optimizer" in backup
        assert backup.attrs["fashionzoo_epochs_done"] == 1

    grown = subprocess.run(["mount", "-o", "remount,size=16m", str(full_disk)], capture_output=True, text=True)
    assert grown.returncode == 0, grown.stderr
    resumed = run_cli(*train, "--resume")

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()] == ["epoch", "0", "1"]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2 and not (run / "backup").exists()


# ====================================================================== the run folder is the zoo's (issue 32)


def _files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in everything_under(folder)}


@pytest.mark.parametrize("out", ["d", "."])
def test_train_refuses_a_folder_of_the_users_and_touches_nothing(tmp_path: Path, out: str) -> None:
    """``train lenet5 --out d`` removed ``d/backup/`` (a thesis in it) and replaced ``d/README.md``; ``--out .``
    would do the same to the current folder."""
    (tmp_path / "d" / "backup").mkdir(parents=True)
    (tmp_path / "d" / "backup" / "thesis.tex").write_text("x\n")
    (tmp_path / "d" / "README.md").write_text("notes\n")
    before = _files(tmp_path)

    where = tmp_path if out == "d" else tmp_path / "d"  # --out d, or --out . in d

    result = run_cli("train", "lenet5", "--epochs", "1", "--limit", "100", "--out", out, cwd=where)

    assert_cli_error(result, "not a fashionzoo run folder", "nothing in it was touched")
    assert _files(tmp_path) == before


def test_a_fresh_run_removes_only_what_the_zoo_wrote_in_a_run_folder(tmp_path: Path) -> None:
    """``train zoo-ensemble --out d2`` deleted ``d2/members/photos/me.jpg``: an earlier run's folders were removed
    whole."""
    from fashionzoo.training import runs

    zoo = [".fashionzoo-run", "backup/latest.weights.h5", "members/seed-0/.fashionzoo-run"]
    zoo += [f"members/seed-0/{name}" for name in ("metrics.json", "history.csv", "lenet5.weights.h5")]
    zoo += ["members/seed-0/backup/latest.weights.h5", "members/seed-0/backup/fine-tune/training_metadata.json"]
    users = ["backup/thesis.tex", "members/photos/me.jpg", "members/seed-0/backup/notes.txt", "members/seed-9/a.txt"]
    for name in zoo + users:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"{}")

    runs.prepare_run_folder(tmp_path, runs.MEMBERS, resume=False)
    runs.prepare_run_folder(tmp_path, runs.BACKUP, resume=False)

    assert everything_under(tmp_path) == [".fashionzoo-run", *sorted(users)]


def test_a_second_run_into_the_same_folder_is_refused_at_once(tmp_path: Path, make_idx_folder) -> None:
    """Two ``train lenet5 --out same`` at once: both crashed at the end in ``read_history``, ``history.csv``
    interleaved."""
    data_dir = make_idx_folder(sizes={"train": 30, "test": 20}).path
    run = tmp_path / "same"
    train = ["train", "lenet5", "--epochs", "2", "--limit", "100", "--data-dir", str(data_dir), "--out", str(run)]
    first = subprocess.Popen(
        [sys.executable, "-m", "fashionzoo", *train], env={**os.environ, **CLI_ENV}, stdout=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(run.is_dir, timeout=120), "the first run never made its folder"
        second = run_cli(*train)
    finally:
        first_out, _ = first.communicate(timeout=600)

    assert_cli_error(second, str(run), "another fashionzoo train is writing this run folder")
    assert first.returncode == 0 and "lenet5: test accuracy" in first_out
    assert [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()] == ["epoch", "0", "1"]


def test_a_failed_claim_removes_its_mark_while_still_holding_the_lock(tmp_path: Path, monkeypatch) -> None:
    """A claim whose block failed released its lock first and only then deleted ``.fashionzoo-run``, the lock file
    itself: another run could lock the file in between and then hold a lock on a deleted file (a third could lock a
    new one beside it). The mark is now removed while the lock is held, then released."""
    import fcntl

    from fashionzoo.training import runs

    out = tmp_path / "run"
    held_when_unmarked: list[bool] = []
    unmark = runs._unmark_if_untouched

    def checking(folder: Path, made: bool) -> None:
        with open(folder / runs.MARKER, "rb") as other:  # another open file: flock conflicts with the claim's lock
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held_when_unmarked.append(True)
            else:
                fcntl.flock(other, fcntl.LOCK_UN)
                held_when_unmarked.append(False)
        unmark(folder, made)

    monkeypatch.setattr(runs, "_unmark_if_untouched", checking)
    with pytest.raises(KeyboardInterrupt), runs.claimed(out):
        raise KeyboardInterrupt

    assert held_when_unmarked == [True]
    assert not out.exists()  # the mark and the folder the claim made, both gone
    with runs.claimed(out):  # and the folder can be claimed again at once
        assert (out / runs.MARKER).is_file()
