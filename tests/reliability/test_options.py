"""Options that cannot mean anything are refused in one line before any work (issue 32's third round, items 9, 14,
19, 20 and 26): NaN thresholds and budgets, zero or negative counts, seeds numpy cannot take, epochs that leave
nothing after the warm-up, and no input at all."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import assert_one_line

from fashionzoo import FashionZooError
from fashionzoo.cli import main
from fashionzoo.registry import DEFAULT_MODEL
from fashionzoo.runtime import Classifier


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.from_pretrained(DEFAULT_MODEL)


@pytest.mark.parametrize(
    ("option", "value"),
    [("top_k", 0), ("top_k", -5), ("workers", 0), ("workers", -1), ("batch_size", 0), ("uncertain_below", 5.0)]
    + [("uncertain_below", math.nan), ("uncertain_below", -0.1)],
)
def test_classify_refuses_options_it_used_to_clamp_or_ignore(
    classifier: Classifier, tmp_path: Path, option: str, value: float
) -> None:
    with pytest.raises(FashionZooError, match=option) as error:
        list(classifier.classify([str(tmp_path / "any.png")], **{option: value}))
    assert_one_line(error)


def test_classify_of_nothing_is_one_line(classifier: Classifier) -> None:
    with pytest.raises(FashionZooError, match="not NoneType") as error:
        list(classifier.classify(None))  # type: ignore[arg-type]
    assert_one_line(error)


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "x.png", "--uncertain-below", "nan"],
        ["bench", "lenet5", "--seconds", "nan"],
        ["bench", "lenet5", "--seconds", "inf"],
        ["train", "lenet5", "--seed", "-1"],
        ["train", "lenet5", "--seed", "99999999999999999999"],
        ["train", "lenet5", "--lr", "nan"],
    ],
)
def test_the_command_line_refuses_non_finite_numbers_and_impossible_seeds(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output  # click's usage error, before any work
    assert "Invalid value" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("model", "epochs"), [("zoo-resnet", 1), ("zoo-ensemble", 1), ("lenet5", 0)])
def test_epochs_that_leave_nothing_after_the_warm_up_are_refused_before_any_work(
    tmp_path: Path, model: str, epochs: int
) -> None:
    from fashionzoo.training.train import train

    with pytest.raises(FashionZooError, match="leave nothing to train") as error:
        train(model, tmp_path / "run", epochs=epochs, data_dir=tmp_path / "no-data-needed")
    assert_one_line(error)
    assert not (tmp_path / "run").exists()


def test_a_seed_numpy_cannot_take_is_refused_by_the_library_too(tmp_path: Path) -> None:
    from fashionzoo.training.train import train

    with pytest.raises(FashionZooError, match="seed -1") as error:
        train("lenet5", tmp_path / "run", seed=-1, data_dir=tmp_path)
    assert_one_line(error)


@pytest.mark.parametrize("name", ["lenet", "no-such-model"])
def test_a_release_pin_for_an_alias_or_an_unknown_name_is_refused(name: str) -> None:
    from fashionzoo.publish.checks import check_published

    with pytest.raises(FashionZooError, match="full name") as error:
        check_published({name: "0" * 40}, ["lenet5"])  # issue 32, item 10: it pinned nothing, with exit 0
    assert_one_line(error)


@pytest.mark.parametrize("threads", [100_000, 1_000_000, -1])
def test_a_session_asking_for_absurd_thread_counts_is_refused_at_once(threads: int) -> None:
    from fashionzoo.publish.hub import released_file
    from fashionzoo.registry import get_entry

    onnx = released_file(get_entry("lenet5"), "onnx")
    with pytest.raises(FashionZooError, match="intra_op_threads must be from 0 to") as error:
        Classifier(onnx, intra_op_threads=threads)  # issue 32, item 16: 100,000 hung, 1,000,000 killed the process
    assert_one_line(error)


def test_fashionzoo_home_that_is_a_file_is_named_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fashionzoo.core.files import home_dir

    home = tmp_path / "notes.txt"
    home.write_text("not a folder")
    monkeypatch.setenv("FASHIONZOO_HOME", str(home))
    with pytest.raises(FashionZooError) as error:
        home_dir()  # issue 32, item 28: the error named the cache path under it, not the variable
    assert_one_line(error, str(home), "$FASHIONZOO_HOME is not a folder")


def test_classify_refuses_at_once_and_takes_numpy_integers(classifier: Classifier, tmp_path: Path) -> None:
    import numpy as np

    with pytest.raises(FashionZooError, match="top_k"):
        classifier.classify([str(tmp_path / "any.png")], top_k=0)  # before the results are iterated
    results = list(classifier.classify([str(tmp_path / "missing.png")], top_k=np.int64(2), workers=np.int32(1)))
    assert len(results) == 1 and "no such file" in results[0].error


def test_recipes_that_cannot_run_with_photos_are_refused() -> None:
    from fashionzoo.registry import get_entry
    from fashionzoo.training.fit import check_recipe

    recipe = get_entry("zoo-resnet.photos").recipe
    with pytest.raises(FashionZooError, match="at least 2"):
        check_recipe("zoo-resnet.photos", recipe.replace(batch_size=1))
    with pytest.raises(FashionZooError, match="cannot both search"):
        check_recipe("zoo-resnet.photos", recipe.replace(search={"lr": [0.1]}))


def test_a_seed_sweep_with_an_impossible_seed_is_refused_before_training() -> None:
    result = CliRunner().invoke(main, ["train", "lenet5", "--seeds", "0,-1"])
    assert result.exit_code == 2 and "-1 is not in the range" in result.output, result.output
