"""Real (short) training runs: artifacts, reproducibility, resume after a kill, search, eval --json."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner
from helpers import assert_cli_error

from fashionzoo.cli import main
from fashionzoo.data.loading import load_split
from fashionzoo.registry import lookup as registry_lookup
from fashionzoo.registry.lookup import get_entry
from fashionzoo.training import runs
from fashionzoo.training.runs import RunRecord


@pytest.fixture(autouse=True)
def _data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_data: Path) -> None:
    monkeypatch.setenv("FASHIONZOO_DATA_DIR", str(shared_data))
    monkeypatch.setenv("FASHIONZOO_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, RunRecord]:
    """A short lenet run (its tests share an xdist group: one pytest-xdist worker trains it)."""
    from fashionzoo.training.train import train

    out = tmp_path_factory.mktemp("run") / "lenet"
    metrics = train("lenet", out, epochs=2, limit=6000, data_dir=shared_data, verbose=0)
    return out, metrics


@pytest.mark.slow  # the module's short run trains lenet5
@pytest.mark.xdist_group("test_training.short_run")
def test_short_run_writes_every_artifact(short_run: tuple[Path, RunRecord]) -> None:
    out, metrics = short_run
    for name in ("lenet5.weights.h5", "history.csv", "curves.png", "confusion.png", "metrics.json", "README.md"):
        assert (out / name).stat().st_size > 0, name
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test"]["accuracy"] == metrics.test["accuracy"]
    assert on_disk["test"]["n"] == 10_000 and on_disk["epochs"] == 2 and on_disk["n_train"] == 6000
    assert on_disk["limit"] == 6000 and not metrics.uses_official_data()  # a --limit run is never releasable
    assert set(on_disk["data_files"]) == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }
    assert len(on_disk["test"]["confusion_matrix"]) == 10
    assert on_disk["recipe"]["seed"] == 0 and on_disk["overrides"] == {"epochs": 2}
    assert 0.70 < metrics.test["accuracy"] <= 1.0  # 2 epochs on 6k images: well above chance
    assert len((out / "history.csv").read_text().splitlines()) == 3
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: keras" in card and "model-index" in card
    assert not (out / "backup").exists()  # removed once the run completed
    with h5py.File(out / "lenet5.weights.h5") as weights:
        assert "optimizer" not in weights and "layers" in weights  # inference weights only


@pytest.mark.slow  # the module's short run trains lenet5
@pytest.mark.xdist_group("test_training.short_run")
def test_same_seed_reproduces_accuracy(short_run: tuple[Path, RunRecord], tmp_path: Path) -> None:
    from fashionzoo.training.train import train

    again = train("lenet", tmp_path / "again", epochs=2, limit=6000, verbose=0)
    assert abs(again.test["accuracy"] - short_run[1].test["accuracy"]) <= 0.005


@pytest.mark.slow  # the module's short run trains lenet5
@pytest.mark.xdist_group("test_training.short_run")
def test_eval_json_on_a_trained_run(short_run: tuple[Path, RunRecord]) -> None:
    out, metrics = short_run
    result = CliRunner().invoke(
        main, ["eval", "lenet", "--weights", str(out / "lenet5.weights.h5"), "--json", "--plot", str(out / "eval.png")]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["n"] == 10_000 and 0 <= payload["accuracy"] <= 1
    assert abs(payload["accuracy"] - metrics.test["accuracy"]) < 1e-9
    assert len(payload["confusion_matrix"]) == 10 and sum(map(sum, payload["confusion_matrix"])) == 10_000
    assert (out / "eval.png").stat().st_size > 0


def _kill_then_resume(
    command: list[str], out: Path, after_epochs: int, epochs: int, backup: str = "backup"
) -> tuple[int, str]:
    """Run ``command``, SIGKILL it once ``after_epochs`` epochs are recorded (the ``backup`` folder under ``out``
    must then exist), rerun it with ``--resume`` and check its history holds all ``epochs`` epochs once; returns
    the epochs done before the kill and the resumed output."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and _backed_up_epochs(out / backup) < after_epochs:
        assert process.poll() is None, "training ended before it could be interrupted"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = _backed_up_epochs(out / backup)  # the epoch is in the backup's one file: no pair to disagree
    assert not (out / "metrics.json").exists()
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    history = [line.split(",")[0] for line in (out / "history.csv").read_text().splitlines()[1:]]
    assert history == [str(epoch) for epoch in range(epochs)] and not (out / "backup").exists()
    assert json.loads((out / "metrics.json").read_text())["resumed_at"][-1] == done_before
    return done_before, resumed.stdout + resumed.stderr


def _backed_up_epochs(folder: Path) -> int:
    """The epochs done in the backup in ``folder`` (0 while there is none)."""
    try:
        with h5py.File(folder / "latest.weights.h5", "r") as file:
            return int(file.attrs["fashionzoo_epochs_done"])
    except (OSError, KeyError):
        return 0


@pytest.mark.slow  # trains in a subprocess, kills it, resumes
def test_resume_after_sigkill_continues_from_last_epoch(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "fashionzoo",
        "train",
        "lenet",
        "--epochs",
        "4",
        "--limit",
        "6000",
        "--out",
        str(out),
    ]
    done_before, log = _kill_then_resume(command, out, after_epochs=2, epochs=4)
    assert 2 <= done_before < 4
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 4
    assert f"Epoch {done_before + 1}/4" in log and "Epoch 1/4" not in log
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] > 0.70


@pytest.mark.slow  # trains in a subprocess, kills it, resumes
def test_resume_inside_the_fine_tuning_phase(tmp_path: Path, small_data: Path) -> None:
    """A transfer run killed after its first fine-tuning epoch resumes in the fine-tuning phase, not from scratch."""
    out = tmp_path / "killed-tl"
    command = [
        sys.executable,
        "-m",
        "fashionzoo",
        "train",
        "vgg16-tl",
        "--backbone-weights",
        "random",
        "--epochs",
        "1",
        "--fine-tune-epochs",
        "3",
        "--limit",
        "320",
        "--out",
        str(out),
    ]
    done_before, log = _kill_then_resume(command, out, after_epochs=2, epochs=4, backup="backup/fine-tune")
    assert 2 <= done_before < 4
    assert f"Epoch {done_before + 1}/4" in log and "Epoch 1/1" not in log and "Epoch 2/4" not in log
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 4


@pytest.mark.slow  # trains in a subprocess, kills it, resumes
def test_resume_inside_the_first_phase_of_a_transfer_recipe(tmp_path: Path, small_data: Path) -> None:
    """Killed in phase one: the resumed run finishes it, then fine-tunes for its one epoch, once (Keras kept the
    resumed epoch, so the fine-tuning phase started from it: extra epochs at the fine-tuning rate)."""
    out = tmp_path / "killed-tl-phase-1"
    command = [
        sys.executable,
        "-m",
        "fashionzoo",
        "train",
        "vgg16-tl",
        "--backbone-weights",
        "random",
        "--epochs",
        "2",
        "--fine-tune-epochs",
        "1",
        "--limit",
        "320",
        "--out",
        str(out),
    ]
    done_before, log = _kill_then_resume(command, out, after_epochs=1, epochs=3)
    assert done_before == 1
    assert "Epoch 2/2" in log and "Epoch 3/3" in log and "Epoch 2/3" not in log
    assert json.loads((out / "metrics.json").read_text())["resumed_at"] == [done_before]


def test_resume_refuses_another_model_other_options_or_other_data(tmp_path: Path, shared_data: Path) -> None:
    """Each key of the interrupted run's state is compared: the message names exactly the one that differs."""
    out = tmp_path / "changed"
    (out / "backup").mkdir(parents=True)
    files = {
        **load_split("train", "fashion-mnist", shared_data).files,
        **load_split("test", "fashion-mnist", shared_data).files,
    }
    same = {
        "epochs_done": 0,
        "wall_time_s": 1.0,
        "model": "lenet5",
        "limit": 640,
        "dataset": "fashion-mnist",
        "build_kwargs": {},
        "recipe": runs.recipe_for_resume(get_entry("lenet").recipe.replace(epochs=1)),
        "data_files": files,
    }
    args = ["train", "lenet", "--out", str(out), "--resume", "--epochs", "1", "--limit", "640"]
    for changed, state, extra in (
        ("recipe", same, ["--lr", "0.5"]),
        ("model", {**same, "model": "cnn"}, []),
        ("data_files", {**same, "data_files": {**files, "x": "0" * 64}}, []),
    ):
        (out / "state.json").write_text(json.dumps(state))
        result = CliRunner().invoke(main, [*args, *extra])
        assert result.exit_code == 1 and f"({changed} differ from state.json)" in result.stderr, result.output


@pytest.mark.slow  # trains
def test_resume_accepts_a_state_from_before_a_recipe_field(tmp_path: Path) -> None:
    """A run interrupted under a version without ``Recipe.precision`` (its ``state.json`` lacks the field) is the
    same run: it resumes (here from an empty backup, so from its first epoch) and completes."""
    out = tmp_path / "older"
    (out / "backup").mkdir(parents=True)
    recipe = runs.recipe_for_resume(get_entry("lenet").recipe.replace(epochs=1))
    del recipe["precision"]
    (out / "state.json").write_text(
        json.dumps(
            {
                "epochs_done": 0,
                "wall_time_s": 1.0,
                "limit": 640,
                "dataset": "fashion-mnist",
                "build_kwargs": {},
                "recipe": recipe,
            }
        )
    )
    changed = CliRunner().invoke(
        main, ["train", "lenet", "--out", str(out), "--resume", "--epochs", "1", "--limit", "640", "--lr", "0.5"]
    )
    assert changed.exit_code == 1 and "must continue the interrupted run" in changed.stderr
    result = CliRunner().invoke(
        main, ["train", "lenet", "--out", str(out), "--resume", "--epochs", "1", "--limit", "640"]
    )
    assert result.exit_code == 0, result.output
    assert RunRecord.from_json(json.loads((out / "metrics.json").read_text()), out).recipe["precision"] == "float32"


def test_resume_without_backup_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", "lenet", "--out", str(tmp_path / "none"), "--resume"])
    assert_cli_error(result, "nothing to resume")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # trains
def test_tuned_lenet_search_runs_and_records_choice(tmp_path: Path) -> None:
    from fashionzoo.training.train import train

    metrics = train("lenet-tuned", tmp_path / "tuned", epochs=1, limit=500, verbose=0)
    search = metrics.search
    assert len(search["trials"]) == 6 and len(search["cross_validation"]["folds"]) == 5
    dense1 = metrics.build_kwargs["dense1"]
    assert dense1 == search["best"]["dense1"] in (64, 80, 96, 112, 128)
    assert metrics.recipe["lr"] == search["best"]["lr"]
    assert metrics.params == 156 + 2_416 + (256 + 1) * dense1 + (dense1 + 1) * 84 + 850


@pytest.mark.slow  # trains
def test_non_finite_loss_stops_with_a_clear_error_and_writes_no_weights(tmp_path: Path) -> None:
    out = tmp_path / "nan"
    result = CliRunner().invoke(
        main, ["train", "mlp-64-32", "--epochs", "3", "--limit", "3000", "--lr", "1e30", "--out", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert "the loss became nan" in result.stderr and "lower --lr" in result.stderr
    assert not (out / "metrics.json").exists() and not (out / "mlp-64-32.weights.h5").exists()


def test_augmentation_changes_images_but_keeps_shape_and_range() -> None:
    import numpy as np

    from fashionzoo.training.fit import augmenter

    images = np.zeros((64, 28, 28, 1), np.float32)
    images[:, 4:24, 2:12] = 1.0  # a bright block left of centre: flips and shifts move it
    out = np.asarray(augmenter(("flip", "translate:0.1", "erase:0.5"), seed=0)(images, training=True))
    assert out.shape == images.shape and out.min() >= 0.0 and out.max() <= 1.0
    changed = np.abs(out - images).reshape(64, -1).max(axis=1) > 0
    assert changed.mean() > 0.5  # most images differ; not a no-op
    flipped = np.asarray(augmenter(("flip",), seed=0)(images, training=True))
    assert {tuple(np.flatnonzero(img.sum(axis=(0, 2)))[[0, -1]]) for img in flipped} == {(2, 11), (16, 25)}


def test_unknown_augmentation_is_a_clear_error() -> None:
    from fashionzoo import FashionZooError
    from fashionzoo.training.fit import augmenter

    with pytest.raises(FashionZooError, match="unknown augmentation 'rotate:10'"):
        augmenter(("rotate:10",), seed=0)


def test_warmup_then_cosine_schedule_and_sgd_options() -> None:
    import fashionzoo
    from fashionzoo.registry.specs import Recipe
    from fashionzoo.training.fit import _compile

    model = fashionzoo.build("lenet")
    recipe = Recipe(
        epochs=10,
        batch_size=32,
        lr=0.1,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=2,
    )
    _compile(model, recipe, steps_per_epoch=100)
    schedule = model.optimizer._learning_rate
    lr = [float(schedule(step)) for step in (0, 100, 200, 600, 1000)]
    assert lr[0] == 0.0 and lr[1] == pytest.approx(0.05) and lr[2] == pytest.approx(0.1)
    assert lr[3] == pytest.approx(0.05, abs=1e-6) and lr[4] == pytest.approx(0.0, abs=1e-6)
    assert model.optimizer.nesterov and model.optimizer.momentum == 0.9 and model.optimizer.weight_decay == 5e-4


@pytest.mark.slow  # trains
def test_transfer_fine_tuning_trains_the_backbone_and_random_backbones_are_flagged(
    tmp_path: Path, small_data: Path
) -> None:
    import numpy as np

    import fashionzoo

    out = tmp_path / "vgg"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "vgg16-tl",
            "--backbone-weights",
            "random",
            "--epochs",
            "1",
            "--fine-tune-epochs",
            "1",
            "--limit",
            "64",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "RANDOM backbone" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["recipe"]["fine_tune_epochs"] == 1
    assert metrics["build_kwargs"] == {"backbone_weights": None}  # recorded: releasing refuses such a run
    assert len((out / "history.csv").read_text().splitlines()) == 3  # frozen epoch + fine-tuning epoch
    assert not (out / "backup").exists()
    refused = CliRunner().invoke(main, ["push", "vgg16-tl", "--repo-id", "someone/vgg", "--run", str(out)])
    assert refused.exit_code == 1 and "random backbone" in refused.stderr  # before any network call

    import keras

    keras.utils.set_random_seed(0)  # the run's seed: the same initial backbone
    initial = fashionzoo.build("vgg16-tl", backbone_weights=None)
    trained = fashionzoo.load("vgg16-tl", weights=out / "vgg16-tl.weights.h5")
    backbone = next(i for i, layer in enumerate(initial.layers) if layer.name.startswith("vgg16"))
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(initial.layers[backbone].get_weights(), trained.layers[backbone].get_weights(), strict=True)
    ]
    assert all(moved)  # every backbone tensor changed: fine-tuning reached the frozen phase's backbone


@pytest.mark.slow  # trains
def test_test_time_flip_models_record_the_served_accuracy(tmp_path: Path) -> None:
    """For a ``test_time_flip`` model, metrics.json holds the accuracy of what ``load`` serves (flip-averaged),
    plus the validation figure without the flip that justifies it; the card says so."""
    import dataclasses

    import fashionzoo
    from fashionzoo.models.evaluation import evaluate
    from fashionzoo.training.train import train

    entry = dataclasses.replace(registry_lookup.get_entry("mlp-64-32"), test_time_flip=True)
    out = tmp_path / "run"
    metrics = train(entry, out, epochs=1, limit=2000, verbose=0)
    assert metrics.test_time_flip is True
    plain = metrics.val["without_test_time_flip"]["accuracy"]
    assert 0.1 < plain < 1 and plain != metrics.val["accuracy"]
    served = evaluate(entry, out / "mlp-64-32.weights.h5")
    assert served["accuracy"] == metrics.test["accuracy"]
    bare = fashionzoo.load(entry, out / "mlp-64-32.weights.h5", test_time_flip=False)
    assert bare.name == "mlp-64-32"
    assert "mirror image" in (out / "README.md").read_text()


@pytest.mark.slow  # trains
def test_mixed_precision_run_saves_and_measures_the_float32_model(tmp_path: Path) -> None:
    """A ``mixed_bfloat16`` recipe trains in bfloat16 but saves float32 weights, its recorded test accuracy is the
    float32 model's (what ``load`` and the ONNX export serve), and the global dtype policy is restored."""
    import dataclasses

    import keras
    import numpy as np

    from fashionzoo.models.evaluation import evaluate
    from fashionzoo.training.train import train

    base = registry_lookup.get_entry("lenet5")
    entry = dataclasses.replace(base, recipe=base.recipe.replace(precision="mixed_bfloat16"))
    record = train(entry, tmp_path, epochs=1, limit=2000, verbose=0)
    assert record.recipe["precision"] == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    dtypes: set[np.dtype] = set()
    with h5py.File(tmp_path / record.weights_file) as weights:
        weights.visititems(lambda _, item: dtypes.add(item.dtype) if isinstance(item, h5py.Dataset) else None)
    assert dtypes == {np.dtype("float32")}
    assert evaluate(entry, tmp_path / record.weights_file)["accuracy"] == record.test["accuracy"]


@pytest.mark.slow  # trains
def test_an_ensemble_trains_its_members_apart_and_averages_them(tmp_path: Path) -> None:
    """An ensemble entry trains one member run per seed under members/, measures the average of their
    probabilities, keeps finished members on --resume (no retraining, the same weights), and refuses a finished
    member that another recipe made, or a --seed of its own."""
    import dataclasses

    import numpy as np

    import fashionzoo
    from fashionzoo.core.errors import FashionZooError
    from fashionzoo.models.loading import predict_probs
    from fashionzoo.training.train import train

    entry = dataclasses.replace(
        registry_lookup.get_entry("zoo-ensemble"),
        build_kwargs={"member": "mlp-64-32", "seeds": (0, 1)},
        test_time_flip=False,
        weights=None,
    )
    # weights=None: the released record's build_kwargs (its members) would override these
    with pytest.raises(FashionZooError, match="nothing to resume"):
        train(entry, tmp_path, resume=True, verbose=0)
    stale = tmp_path / "members" / "seed-5" / runs.METRICS  # an earlier run's member: a fresh run clears them all
    stale.parent.mkdir(parents=True)  # first, so that one it is killed before reaching cannot pass for its own
    stale.write_text("{}")
    for run_folder in (tmp_path, stale.parent):  # marked as run folders, as the earlier run left them
        (run_folder / runs.MARKER).touch()
    record = train(entry, tmp_path, epochs=1, limit=1000, verbose=0)
    assert not stale.exists()
    assert runs.read_record(tmp_path).build_kwargs == {"member": "mlp-64-32", "seeds": [0, 1]}  # which members
    folders = [tmp_path / "members" / f"seed-{seed}" for seed in (0, 1)]
    members = [runs.read_record(folder) for folder in folders]
    assert [member.seed for member in members] == [0, 1] and record.params == 2 * members[0].params
    assert record.wall_time_s == pytest.approx(sum(member.wall_time_s for member in members), abs=0.2)
    assert record.recipe["lr"] == registry_lookup.get_entry("mlp-64-32").recipe.lr  # the members' recipe
    images = load_split("test").images[:64]
    averaged = predict_probs(fashionzoo.load(entry, tmp_path / record.weights_file), images)
    apart = [predict_probs(fashionzoo.load("mlp-64-32", folder / "mlp-64-32.weights.h5"), images) for folder in folders]
    assert not np.allclose(apart[0], apart[1], atol=1e-3)
    assert np.allclose(averaged, np.mean(apart, axis=0), atol=1e-6)
    assert len((tmp_path / runs.HISTORY).read_text().splitlines()) == 2  # the header and the members' mean of epoch 1

    stamps = [(folder / "mlp-64-32.weights.h5").stat().st_mtime_ns for folder in folders]
    again = train(entry, tmp_path, epochs=1, limit=1000, resume=True, verbose=0)
    assert [(folder / "mlp-64-32.weights.h5").stat().st_mtime_ns for folder in folders] == stamps
    assert again.test == record.test  # the same members (the file's bytes hold Keras' layer names, which vary)
    with pytest.raises(FashionZooError, match=r"seed-0: this finished member was trained with another model, recipe"):
        train(entry, tmp_path, epochs=2, limit=1000, resume=True, verbose=0)
    with pytest.raises(FashionZooError, match="drop --seed"):
        train(entry, tmp_path, seed=3, verbose=0)


def test_train_refuses_an_out_folder_it_cannot_make_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("in the way")
    result = CliRunner().invoke(main, ["train", "lenet", "--epochs", "1", "--out", str(tmp_path / "a-file" / "run")])
    assert_cli_error(result, tmp_path / "a-file")
    assert len(result.stderr.strip().splitlines()) == 1, result.output
    assert "a-file/run: cannot create a file in" in result.stderr or "cannot write there" in result.stderr
