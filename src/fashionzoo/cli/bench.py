"""``bench``."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import click

from fashionzoo.cli.common import (
    FiniteFloatRange,
    data_dir_option,
    device_option,
    echo_json,
    import_tensorflow_quietly,
    json_option,
    main,
    user_errors,
)
from fashionzoo.core.errors import FashionZooError


def _batch_sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated whole numbers, e.g. 1,8,64") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: give at least one batch size, each 1 or more")
    return sizes


def _bench_status(done: int, total: int, label: str) -> None:
    """A one-line progress display on stderr, cleared at the end."""
    click.echo("\r\033[K" + (f"bench [{done}/{total}] {label}" if done < total else ""), err=True, nl=False)


def _bench_table(report: dict[str, Any]) -> None:
    """The human output of ``bench``: machine, one row per (model, backend, batch size), each cell's winner, then
    per-model facts."""
    m, peak = report["machine"], report["machine"]["measured_peak"]
    busy = m["others_cpu_share"]
    others = f"; other processes used {busy:.0%} of the CPUs meanwhile" if busy is not None else ""
    click.echo(
        f"{m['cpu']}, {m['cpu_physical_cores']} cores, flags {' '.join(m['cpu_flags']) or '-'}; onnxruntime "
        f"{m['onnxruntime']} ({', '.join(m['onnxruntime_providers'])}), TensorFlow {m['tensorflow']}{others}"
    )
    click.echo(f"{'model':<16} {'backend':<14} {'batch':>5} {'p50 ms':>9} {'p99 ms':>9} {'images/s':>10} {'x call':>7}")
    for r in report["results"]:
        if "missing" in r:
            click.echo(f"{r['model']:<16} {r['backend']:<14} {r['batch_size']:>5} missing: {r['missing']}")
            continue
        click.echo(
            f"{r['model']:<16} {r['backend']:<14} {r['batch_size']:>5} {r['p50_ms']:>9.3f} "
            f"{r['p99_ms']:>9.3f} {r['images_per_s']:>10,.0f} {r['speedup_vs_call']:>7.2f}"
        )
    for cell in report["cells"]:
        versus = (
            f"; zoo {cell['zoo_vs_peer']:.2f}x the speed of {cell['fastest_peer']}, the fastest peer runtime"
            if cell["zoo_vs_peer"] is not None
            else ""
        )
        click.echo(f"{cell['model']} batch {cell['batch_size']}: fastest {cell['winner']}{versus}")
    for name, facts in report["models"].items():
        best, int8 = facts["best_fp32"], facts["int8"]
        click.echo(
            f"{name}: {facts['flops_per_image'] / 1e6:.2f} MFLOPs/image; best fp32: {best['backend']} at "
            f"batch {best['batch_size']}, {best['gflops']:.1f} GFLOP/s = {best['fraction_of_peak']:.0%} of "
            f"the {peak['gflops']:.0f} GFLOP/s measured peak ({peak['how']})"
        )
        click.echo(
            f"{name}: int8 file {int8['size_ratio']:.1f}x smaller, test accuracy {int8['test_accuracy']:.4f} "
            f"(fp32 {facts['fp32']['test_accuracy']:.4f})"
        )


@main.command()
@click.argument("names", nargs=-1)
@click.option(
    "--batch-sizes", default="1,64,1024", show_default=True, callback=_batch_sizes, help="Comma-separated batch sizes."
)
@device_option(default="cpu")
@click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime and TensorFlow threads (default: theirs).")
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    help="Most timed calls per backend and cell (default: the time budget decides).",
)
@click.option(
    "--seconds",
    type=FiniteFloatRange(min=0),
    default=3.0,
    show_default=True,
    help="Time budget per model and batch size, shared by the backends in interleaved rounds (at least 3 rounds).",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="A local .weights.h5 file (one NAME only).")
@data_dir_option
@json_option
@click.option("--out", type=click.Path(dir_okay=False), help="Also write machine info, models and results as JSON.")
@user_errors
def bench(
    names: tuple[str, ...],
    batch_sizes: tuple[int, ...],
    device: str,
    threads: int | None,
    repeats: int | None,
    seconds: float,
    weights: str | None,
    data_dir: str | None,
    as_json: bool,
    out: str | None,
) -> None:
    """Time Keras, ONNX Runtime (plain and the zoo's path, fp32 and int8), LiteRT and OpenVINO side by side, per
    batch size, in interleaved rounds (LiteRT and OpenVINO: pip install "fashionzoo[bench]")."""
    from fashionzoo.core.files import atomic_open
    from fashionzoo.registry.catalogue import DEFAULT_MODEL

    names = names or (DEFAULT_MODEL,)
    if weights and len(names) != 1:
        raise FashionZooError("--weights needs exactly one model NAME")
    import_tensorflow_quietly()
    from fashionzoo.bench.run import run

    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(atomic_open(out)) if out else None  # a file it cannot write fails here, first
        report = run(
            names,
            batch_sizes,
            device,
            threads,
            repeats=repeats,
            max_seconds=seconds,
            progress=_bench_status if sys.stderr.isatty() else None,
            weights={names[0]: weights} if weights else None,
            data_dir=data_dir,
        )
        if handle:
            json.dump(report, handle, indent=2)
    if as_json:
        echo_json(report)
    else:
        _bench_table(report)
