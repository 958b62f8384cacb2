"""Weights that learn from real photos: the pool read and split by sender, the loss for labels that allow several
classes or none, a small photo recipe retrained through the CLI and its recorded figures checked against the weights
it wrote, and the release refusing it (skipped where the shared CC0 pool is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from fashionzoo import FashionZooError
from fashionzoo.cli import main
from fashionzoo.data.datasets import CLOTHING_PHOTOS, DATASETS
from fashionzoo.photos.pool import read_pool, score, split_by_sender
from fashionzoo.registry import get_entry
from fashionzoo.training import runs
from fashionzoo.training.runs import read_record

POOL = Path(__file__).resolve().parents[2] / "shared/data/clothing-photos"
LIMIT = 400


@pytest.fixture(autouse=True)
def pool_folder(monkeypatch: pytest.MonkeyPatch) -> Path:
    if not (POOL / CLOTHING_PHOTOS.manifest).is_file():
        pytest.skip(f"the shared clothing-photos pool is not at {POOL}")
    monkeypatch.setenv(CLOTHING_PHOTOS.env_var, str(POOL))
    return POOL


def test_the_pool_is_read_as_predict_converts_it_and_split_by_sender() -> None:
    photos, files = read_pool(CLOTHING_PHOTOS, limit=60, seed=1)
    assert len(photos) == 60 and photos.pixels.shape == (60, 28, 28) and photos.pixels.dtype == np.uint8
    assert not CLOTHING_PHOTOS.is_official(files)  # a part of the pool is not the pool
    shoes = [row for row, label in enumerate(photos.labels) if label == "Shoes"]
    assert all(set(np.flatnonzero(photos.allowed[row])) == {5, 7, 9} for row in shoes)
    hats = [row for row, label in enumerate(photos.labels) if label in ("Hat", "Shorts", "Skirt")]
    assert all(not photos.allowed[row].any() for row in hats)
    train, val = split_by_sender(photos, 0.3, seed=0)
    assert len(train) + len(val) == 60 and not set(train.senders) & set(val.senders) and len(val)


def test_the_loss_sums_allowed_classes_smooths_like_keras_and_flattens_photos_of_none() -> None:
    from fashionzoo.training.fit import AllowedClassesLoss

    probs = np.array([[0.7, 0.1, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=np.float32)
    one_hot = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 1]], dtype=np.float32)
    loss = AllowedClassesLoss(label_smoothing=0.1, outlier_weight=0.5)
    rows = keras.ops.convert_to_numpy(loss.call(one_hot, probs))
    keras_ce = keras.losses.CategoricalCrossentropy(label_smoothing=0.1, reduction=None)(one_hot[:1], probs[:1])
    assert rows[0] == pytest.approx(float(keras_ce[0]), rel=1e-5)  # a one-hot target: Keras' own loss
    assert rows[1] == pytest.approx(-0.5 * np.log(probs[1]).mean(), rel=1e-5)  # none of the classes: flat, weighted
    assert rows[2] == pytest.approx(0.9 * -np.log(0.4) + 0.1 * -np.log(probs[2]).mean(), rel=1e-5)


def test_the_trained_weights_are_averaged_back_with_the_start_by_its_share() -> None:
    """WiSE-FT: every weight, batch-norm statistics included, ends ``(1 - share) x trained + share x start``."""
    from fashionzoo.models.builders import build
    from fashionzoo.training.single import averaged_with_start

    model = build(get_entry("zoo-resnet"))
    trained = [np.full(w.shape, 2.0, np.float32) for w in model.get_weights()]
    start = [np.full(w.shape, -3.0, np.float32) for w in trained]
    model.set_weights(trained)
    averaged = averaged_with_start(model, start, 0.2).get_weights()
    assert len(averaged) == len(trained) and all(np.allclose(w, 0.8 * 2.0 + 0.2 * -3.0) for w in averaged)


@pytest.mark.slow
def test_a_small_photo_recipe_records_what_its_weights_measure_and_is_not_released(
    tmp_path: Path, small_data: Path
) -> None:
    out = tmp_path / "run"
    trained = CliRunner().invoke(
        main,
        ["train", "zoo-resnet.photos", "--limit", str(LIMIT), "--epochs", "1", "--out", str(out), "--json"],
    )
    assert trained.exit_code == 0, trained.output
    record = read_record(out)
    assert record.dataset == "photos" and record.photos is not None and record.photos["n"] > 0
    pool, files = CLOTHING_PHOTOS.recorded_names
    assert {pool, files, "zoo-resnet.weights.h5"} <= set(record.data_files)
    assert not record.uses_official_data()  # a --limit run, on a part of the pool
    entry = get_entry("zoo-resnet.photos")
    import fashionzoo

    served = fashionzoo.load(entry, out / record.weights_file)
    photos, _ = read_pool(DATASETS["photos"].photo_pool, LIMIT, seed=20170825)  # the run's own draw and split
    _, held_out = split_by_sender(photos, entry.recipe.photo_val_fraction, seed=20170825)
    probs = served.predict(held_out.pixels[..., None].astype(np.float32) / 255.0, verbose=0)
    assert score(held_out, probs)["phone_balanced_accuracy"] == pytest.approx(
        record.photos["phone_balanced_accuracy"], abs=0.02
    )
    from fashionzoo.publish.checks import check_releasable

    with pytest.raises(FashionZooError, match=f"--limit {LIMIT}"):  # what release checks each run against
        check_releasable(out, record, entry)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "clothing-photos pool" in card and "CC0 1.0" in card
    assert json.loads((out / "metrics.json").read_text())["photos"]["senders"] >= 1


@pytest.mark.slow
def test_each_member_of_a_photo_ensemble_starts_from_the_released_ensembles_member(
    tmp_path: Path, small_data: Path
) -> None:
    """With a learning rate too small to move them, each member's trained kernels are its released counterpart's
    (seed_0's from seed_0, seed_1's from seed_1): the members start from the ensemble's own members."""
    import fashionzoo

    out = tmp_path / "ensemble"
    options = ["--limit", str(LIMIT), "--epochs", "1", "--lr", "1e-12", "--out", str(out)]
    trained = CliRunner().invoke(main, ["train", "zoo-ensemble.photos", *options])
    assert trained.exit_code == 0, trained.output
    released = fashionzoo.load("zoo-ensemble", test_time_flip=False)
    member = get_entry("zoo-resnet.photos")
    for seed in (0, 1):
        record = read_record(out / "members" / f"seed-{seed}")
        assert (record.recipe["start_from"], record.recipe["start_member"]) == ("zoo-ensemble", f"seed_{seed}")
        own = get_entry("zoo-ensemble.photos").recipe  # the fine-tuning is the ensemble recipe's, not the member's
        assert runs.recipe_for_resume(record.recipe) == runs.recipe_for_resume(
            own.replace(seed=seed, start_member=f"seed_{seed}", epochs=1, lr=1e-12)
        )
        assert (own.start_weight, own.outlier_weight) != (member.recipe.start_weight, member.recipe.outlier_weight)
        kernels = fashionzoo.load(
            member, out / "members" / f"seed-{seed}" / record.weights_file, test_time_flip=False
        ).get_weights()[0]
        own, other = (released.get_layer(f"seed_{k}").get_weights()[0] for k in (seed, 1 - seed))
        assert np.allclose(kernels, own, atol=1e-5) and not np.allclose(kernels, other, atol=1e-2)
    ensemble = read_record(out)
    assert ensemble.photos is not None and "zoo-ensemble.weights.h5" in ensemble.data_files
