"""The command line: list, info, download, push errors, user errors as one line with exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from helpers import assert_cli_error

from fashionzoo.cli import main
from fashionzoo.registry.lookup import REGISTRY, all_entries, get_entry
from fashionzoo.training import runs


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_list_json_has_every_model() -> None:
    code, out, _ = run("list", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == [e.full_name for e in all_entries()]
    assert {r["name"] for r in rows} >= {*REGISTRY, "cnn-small.mnist", "mlp-small.mnist"}
    lenet = next(r for r in rows if r["name"] == "lenet5")
    assert "lenet" in lenet["aliases"] and lenet["params"] == 44_426
    assert all({"name", "aliases", "params", "weights_available"} <= set(r) for r in rows)
    assert not next(r for r in rows if r["name"] == "vgg16-tl")["weights_available"]


def test_list_human_table_mentions_aliases() -> None:
    code, out, _ = run("list")
    assert code == 0 and "lenet, lenet-5" in out and "843,658" in out


def test_info_json_shows_layers_recipe_and_metrics() -> None:
    code, out, _ = run("info", "lenet", "--json")
    info = json.loads(out)
    assert code == 0 and info["name"] == "lenet5" and info["recipe"]["epochs"] == 8
    assert sum(layer["params"] for layer in info["layers"]) == 44_426
    released = get_entry("lenet5").weights  # retrained on the official files: its record, on the whole test file
    assert info["metrics"] == released.metrics and info["metrics"]["n"] == 10_000
    assert info["metrics"]["accuracy"] >= info["target_accuracy"]
    assert info["classes"][0] == "T-shirt/top" and info["tag"] == "fashion-mnist"


def test_info_says_transfer_models_have_no_checkpoint() -> None:
    code, out, _ = run("info", "resnet50-tl")
    assert code == 0 and "No trained checkpoint exists yet" in out


def test_unknown_model_is_one_line_with_close_matches() -> None:
    result = CliRunner().invoke(main, ["info", "lenett"])
    assert_cli_error(result, "lenett", "Did you mean")
    assert result.stderr.count("\n") == 1


def test_download_resolves_shipped_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FASHIONZOO_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run("download", "lenet5")
    assert code == 0, err
    assert "lenet5 weights:" in out and "lenet5 onnx:" in out


def test_download_needs_a_name() -> None:
    assert_cli_error(CliRunner().invoke(main, ["download"]), "--all")


def test_push_refuses_a_folder_without_weights(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["push", "lenet5", "--repo-id", "someone/lenet5", "--run", str(tmp_path)])
    assert_cli_error(result, "metrics.json: no such file", "train the model")


def test_download_json_lists_each_file_and_where_it_is(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FASHIONZOO_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run("download", "lenet5", "--json")
    assert code == 0, err
    files = json.loads(out)["files"]
    assert [(f["model"], f["kind"]) for f in files] == [("lenet5", "weights"), ("lenet5", "onnx")]
    assert all(Path(f["path"]).is_file() for f in files)


def test_push_refuses_a_run_of_another_model(tmp_path: Path, run_record) -> None:
    runs.write_record(tmp_path, run_record("lenet5", "lenet5.weights.h5"))
    result = CliRunner().invoke(main, ["push", "cnn", "--repo-id", "someone/cnn", "--run", str(tmp_path)])
    assert_cli_error(result, "a run of lenet5, not cnn")
    assert result.stderr.count("\n") == 1


def test_a_folder_of_folders_points_at_recursive(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "shirts").mkdir(parents=True)
    (photos / "shirts" / "white.png").write_bytes(
        (Path(__file__).parents[1] / "examples/images/shirt-photo.png").read_bytes()
    )
    flat = CliRunner().invoke(main, ["predict", str(photos), "--model", "lenet5"])
    assert_cli_error(flat, photos, "it has subfolders (--recursive looks in them)")
    assert flat.stderr.count("\n") == 1
    code, out, err = run("predict", str(photos), "--model", "lenet5", "--recursive")
    assert code == 0 and out.startswith(f"{photos / 'shirts' / 'white.png'}: "), err


def test_paths_that_cannot_name_a_file_are_one_line(tmp_path: Path) -> None:
    image = Path(__file__).parents[1] / "examples/images/bag-photo.png"
    (tmp_path / "a-file").write_bytes(b"")
    (tmp_path / "loop").symlink_to("loop")
    for out in (tmp_path / "a-file" / "rows.jsonl", tmp_path / "loop" / "rows.jsonl"):
        result = CliRunner().invoke(main, ["predict", str(image), "--model", "lenet5", "--out", str(out)])
        assert_cli_error(result, f"{out}: cannot write there")
        assert result.stderr.count("\n") == 1, result.stderr
    too_long = str(tmp_path / ("a" * 300 + ".png"))
    code, out, err = run("predict", too_long, str(image), "--model", "lenet5")
    assert code == 1 and err == f"fashionzoo: error: {too_long}: cannot read it (File name too long); check the path\n"
    assert out.startswith(f"{image}: ")  # the other input is still classified
