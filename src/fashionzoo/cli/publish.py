"""``release`` and ``push``."""

from __future__ import annotations

from pathlib import Path

import click

from fashionzoo.cli.common import (
    data_dir_option,
    echo_json,
    import_tensorflow_quietly,
    json_option,
    main,
    run_folder,
    user_errors,
)
from fashionzoo.registry.lookup import get_entry


@main.command()
@click.argument("name")
@click.option("--repo-id", required=True, help="Hub repo to upload to, e.g. fashionzoo/cnn.")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), help="Run folder (default: runs/NAME).")
@click.option("--revision", help="Branch to commit to (default: the repo's main branch).")
@click.option("--token", envvar="HF_TOKEN", help="Hub token (default: $HF_TOKEN or the saved login).")
@json_option
@user_errors
def push(name: str, repo_id: str, run_dir: str | None, revision: str | None, token: str | None, as_json: bool) -> None:
    """Upload a trained run (weights, ONNX, card, metrics) to the Hub; prints the commit hash to pin."""
    from fashionzoo.publish import hub

    entry = get_entry(name)
    run = run_folder(run_dir, entry)
    commit = hub.push(run, repo_id, entry, revision=revision, token=token)
    if as_json:
        echo_json({"model": entry.full_name, "repo_id": repo_id, "commit": commit, "run": str(run)})
        return
    click.echo(
        f"{entry.full_name}: uploaded to {repo_id} at commit {commit}; pin it with "
        f"'fashionzoo release {run} --published {entry.full_name}={commit}'"
    )


@main.command()
@click.argument(
    "run_dirs",
    nargs=-1,
    required=True,
    metavar="RUN_DIR...",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
)
@click.option("--published", multiple=True, metavar="NAME=COMMIT", help="Pin the Hub commit 'push' printed.")
@click.option(
    "--tree",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The fashionzoo source checkout to release into (default: the one installed in editable mode).",
)
@data_dir_option
@json_option
@user_errors
def release(
    run_dirs: tuple[Path, ...], published: tuple[str, ...], tree: Path | None, data_dir: str | None, as_json: bool
) -> None:
    """Maintainers: release finished runs into the package (ONNX with parity, int8, weights.json, model table)."""
    from fashionzoo.publish.checks import parse_published
    from fashionzoo.publish.release import ReleaseTree, check_release
    from fashionzoo.publish.release import release as release_runs

    pins = parse_published(published)
    target = ReleaseTree(tree) if tree else ReleaseTree.source_checkout()
    check_release(list(run_dirs), target, pins)  # a wrong --tree, run or pin at once, not after TensorFlow
    import_tensorflow_quietly()
    released = release_runs(list(run_dirs), target, published=pins, data_dir=data_dir)
    if as_json:
        echo_json(
            {
                name: {
                    "metrics": record.metrics,
                    "revision": record.revision,
                    "files": {key: file.filename for key, file in record.files.items()},
                }
                for name, record in released.items()
            }
        )
        return
    for name, record in released.items():
        m = record.metrics
        click.echo(
            f"{name}: released, test accuracy {m['accuracy']:.4f} on {m['n']:,} images, ONNX batch-1 "
            f"{m['onnx_batch1_p50_ms']:.3f} ms; revision {record.revision or 'not published'}"
        )
