"""Produce every benchmark figure of the docs in one command.

    python benchmarks/run.py [NAME ...] [--weights NAME=FILE ...] [--batch-sizes 1,64,1024] [--threads N]
                             [--seconds 12] [--sweep-model cnn] [--no-sweep] [--data-dir DIR] [--out DIR]
                             [--render-only]

Runs ``fashionzoo.bench.run.run`` for every model with released weights (or the names given), the session-tuning
sweep for one model, and writes the JSON document, the chart and the page generated from it (``--render-only``
regenerates both from an existing JSON). Only the docs' run, every released model on its shipped weights, writes the
committed ``benchmarks/results.json``, ``docs/img/throughput.png`` and ``docs/benchmarks.md``; any other run (a
subset of the models, ``--weights``) writes ``results.json``, ``benchmarks.md`` and ``img/throughput.png`` into
``runs/benchmarks/``. ``--out DIR`` chooses the folder for any run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

from fashionzoo.bench.report import LABELS, WITHIN, measured
from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import atomic_open
from fashionzoo.registry.lookup import REGISTRY, get_entry

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
PAGE = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "img" / "throughput.png"
SCRATCH = ROOT / "runs" / "benchmarks"
"""Where a run that is not the docs' run writes by default (``runs/`` is not committed)."""
NOISE = 0.05
"""A session setting counts as faster than the defaults only if it beats them by more than this fraction."""
BUSY_SHARE = 0.1
"""Share of the CPUs used by other processes during the run above which the page warns of a busy machine."""
_DEFAULT_THREADS = (
    "ONNX Runtime: its default, one per physical core; LiteRT and OpenVINO: one per physical core; TensorFlow: its own"
)


class Outputs(NamedTuple):
    """Where a run's JSON document, page and chart are written."""

    results: Path
    page: Path
    chart: Path

    @classmethod
    def in_folder(cls, folder: Path) -> Outputs:
        """The three files in one folder, laid out so that the page's link to its chart holds."""
        return cls(folder / "results.json", folder / "benchmarks.md", folder / "img" / "throughput.png")


DOCS = Outputs(RESULTS, PAGE, CHART)
"""The committed files, written only by the docs' run (:func:`outputs`)."""


def _progress(done: int, total: int, label: str) -> None:
    print(f"[{done}/{total}] {label}", file=sys.stderr, flush=True)


def released() -> list[str]:
    """Every model with released weights, in registry order: the models of the docs' run."""
    return [entry.name for entry in REGISTRY.values() if entry.weights]


def model_names(args: argparse.Namespace) -> list[str]:
    """The canonical names of the models to benchmark: those given, else every released one."""
    names = args.names or released()
    if not names:
        raise FashionZooError(
            "no model has released weights yet: name the models and pass --weights NAME=FILE "
            "(e.g. --weights cnn=runs/cnn/cnn.weights.h5)"
        )
    return [get_entry(name).name for name in names]


def outputs(args: argparse.Namespace, names: list[str]) -> Outputs:
    """``--out DIR`` if given; else the committed files for the docs' run (every released model on its shipped
    weights) and for ``--render-only``, and :data:`SCRATCH` for any other run: a partial run never replaces the
    docs' figures."""
    if args.out:
        return Outputs.in_folder(Path(args.out).expanduser().resolve())
    if args.render_only or (not args.weights and set(names) == set(released())):
        return DOCS
    return Outputs.in_folder(SCRATCH)


def measure(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """Run the benchmark of ``names`` (and the sweep) and return the JSON document."""
    from fashionzoo.bench import run as benchmark

    weights = dict(item.split("=", 1) for item in args.weights)
    report = benchmark.run(
        names,
        args.batch_sizes,
        threads=args.threads,
        max_seconds=args.seconds,
        progress=_progress,
        weights=weights,
        data_dir=args.data_dir,
    )
    report["sweep"] = []
    if not args.no_sweep:
        model = get_entry(args.sweep_model).name if args.sweep_model else ("cnn" if "cnn" in names else names[0])
        report["sweep"] = benchmark.compare_session_settings(
            model,
            max_seconds=args.sweep_seconds,
            progress=_progress,
            weights=weights.get(model),
            data_dir=args.data_dir,
        )
    report["generated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["command"] = " ".join(["python benchmarks/run.py", *sys.argv[1:]])
    return report


def _row(report: dict[str, Any], model: str, backend: str, batch_size: int) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in measured(report["results"])
            if (r["model"], r["backend"], r["batch_size"]) == (model, backend, batch_size)
        ),
        None,
    )


def sweep_verdicts(sweep: list[dict[str, Any]], cores: int) -> list[str]:
    """Per precision and batch size: whether a setting beats the defaults by more than the noise, i.e. the larger of
    :data:`NOISE` and how far ``intra_op_threads=<cores>`` (the defaults in effect) strayed from them."""
    lines = []
    for precision, size in sorted({(r["precision"], r["batch_size"]) for r in sweep}):
        cells = [r for r in sweep if (r["precision"], r["batch_size"]) == (precision, size)]
        twin = next((r["vs_defaults"] for r in cells if r["setting"] == f"intra_op_threads={cores}"), 1.0)
        noise = max(NOISE, abs(twin - 1))
        faster = [r for r in cells if r["vs_defaults"] > 1 + noise and r["setting"] != f"intra_op_threads={cores}"]
        if faster:
            best = max(faster, key=lambda r: r["vs_defaults"])
            lines.append(
                f"{precision}, batch {size}: `{best['setting']}` is {best['vs_defaults']:.2f}x the defaults, "
                f"beyond the noise ({noise:.0%}): consider it"
            )
        else:
            lines.append(f"{precision}, batch {size}: no setting beats the defaults beyond the noise ({noise:.0%})")
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    """Throughput against batch size, log-log, one panel per model and one line per measured backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report["models"])
    cols = min(4, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False)
    for ax, model in zip(axes.flat, models, strict=False):
        for backend, label in LABELS.items():
            points = sorted(
                (r["batch_size"], r["images_per_s"])
                for r in measured(report["results"])
                if r["model"] == model and r["backend"] == backend
            )
            if points:
                style = {"linewidth": 2.5, "color": "black"} if backend == "zoo" else {}
                ax.plot(*zip(*points, strict=True), marker="o", label=label, **style)
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="images/s (batch / p50)", title=model)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(models) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    m = report["machine"]
    fig.suptitle(
        f"{m['cpu']}, {m['cpu_physical_cores']} cores, other processes {_share(m.get('others_cpu_share'))} "
        f"of the CPUs; onnxruntime {m['onnxruntime']}, LiteRT {m.get('ai_edge_litert') or '-'}, OpenVINO "
        f"{m.get('openvino') or '-'}, TensorFlow {m['tensorflow']}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _share(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0%}"


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _load_note(m: dict[str, Any]) -> list[str]:
    """How busy the machine was, and what that means for the figures."""
    share = m.get("others_cpu_share")
    busy = share is not None and share > BUSY_SHARE
    lines = [
        f"> **Load**: other processes kept {_share(share)} of the CPUs busy during the run (load average "
        f"{', '.join(f'{x:.1f}' for x in m['load_average'] or [])} at the end)."
    ]
    if busy:
        lines[0] += (
            " The machine is shared with training jobs, so absolute latencies are inflated and move between "
            "runs; the backends of a cell were timed in interleaved rounds, so the ratios between them "
            "(who wins a cell, the zoo's path against a peer) are the figures to read, and a ratio within a "
            "few percent of 1 is a tie."
        )
    return [*lines, ""]


def _verdict(cell: dict[str, Any]) -> str:
    if cell["zoo_keeps_up"] is None:
        return "no peer measured"
    return "met" if cell["zoo_keeps_up"] else "**not met**"


def render(report: dict[str, Any]) -> str:
    """``docs/benchmarks.md`` from the JSON document."""
    m, settings = report["machine"], report["settings"]
    nominal, peak = m["peak_fp32"], m["measured_peak"]
    lines = [
        "# Benchmarks: the zoo's inference path against LiteRT, OpenVINO, ONNX Runtime and Keras",
        "",
        f"Generated by `{report['command']}` on {report['generated']} from `benchmarks/results.json`; do not edit by "
        "hand, rerun the script instead. Where the time goes in the cells the zoo does not win: "
        "[inference-profile.md](inference-profile.md).",
        "",
        *_load_note(m),
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu']}, {m['cpu_physical_cores']} physical cores ({m['cores']} logical), {m['cpu_mhz']} MHz |",
        f"| Vector flags | {' '.join(m['cpu_flags']) or '-'} |",
        f"| Software | Python {m['python']}, numpy {m['numpy']}, onnxruntime {m['onnxruntime']} "
        f"({', '.join(m['onnxruntime_providers'])}), LiteRT (ai-edge-litert) {m.get('ai_edge_litert') or 'missing'}, "
        f"OpenVINO {m.get('openvino') or 'missing'}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"fashionzoo {m['fashionzoo']} |",
        f"| Threads | {m['threads'] or _DEFAULT_THREADS} |",
        f"| Measured fp32 peak | **{peak['gflops']:.1f} GFLOP/s**: {peak['how']}, best of {peak['measurements']} "
        f"measurements during the run (nominal: {nominal['gflops'] or 0:.1f} GFLOP/s = {nominal['cores']} cores x "
        f"{nominal['ghz'] or 0:.2f} GHz x {nominal['flops_per_cycle']} FLOPs/cycle) |",
        f"| Platform | {m['platform']} |",
        "",
        "## Method",
        "",
        "Each model is run by every backend on the same float32 NHWC batch (seeded random pixels; the cost of these "
        "models does not depend on pixel values):",
        "",
        "- **zoo Classifier.run (after)**: `fashionzoo.runtime.Classifier.run` with `Classifier`'s default session "
        "settings, on the released fp32 ONNX file; a batch of one goes to a second session with the batch axis fixed "
        "to 1 and I/O binding (see `SingleImage` in `runtime/session.py`). `predict` opens its session without "
        "spinning threads, so that its loading processes get the CPU (docs/photos.md): at batch 1 that measured 111 "
        "against 100 µs for `cnn` and 20.5 against 20.8 µs for `lenet5` (interleaved, one process, a loaded machine);",
        "- **ORT session.run (before)**: `InferenceSession.run` on the same file and default session, the zoo's path "
        "before this change: the difference between the two is the tuning, measured in the same rounds;",
        "- **zoo int8**: `Classifier.run` on the released static int8 file (different probabilities, so reported "
        "beside the fp32 path, not as it);",
        "- **LiteRT**: `ai_edge_litert` Interpreter (XNNPACK) on a `.tflite` file converted from the Keras model "
        "with TensorFlow's TFLite converter (fp32) and checked against Keras on the 10,000 test images (max abs "
        "difference of probabilities <= 1e-5, same top-1) before use; resized to each batch size; input copied in "
        "and output copied out on every call;",
        "- **OpenVINO**: the CPU plugin on the released ONNX file, reshaped to each batch size, "
        "`INFERENCE_PRECISION_HINT=f32` (on this CPU OpenVINO otherwise runs fp32 models in bf16: probabilities "
        "off by 5e-3) and `PERFORMANCE_HINT=LATENCY`;",
        "- **Keras call**: `model(x, training=False)` in a `tf.function`; **Keras predict**: `model.predict`.",
        "",
        f"Within a (model, batch size) cell the backends take turns of about 20 ms (at least one call) in rounds, "
        f"each round starting one backend later, until {settings['max_seconds']:g} s have passed and every backend "
        "had at least 3 turns; after 3 warm-up calls each. p50 and p99 are per-batch latencies over all timed calls "
        "of the cell; images/s = batch size / p50; `x call` is the speedup over the Keras call.",
        "",
        "## The zoo's path against its peers",
        "",
        f"Target: the zoo's path (`Classifier.run`) at most {WITHIN:.0%} slower than the fastest peer (LiteRT or "
        "OpenVINO) in every cell. `zoo / peer` = the peer's p50 / the zoo's p50 (above 1: the zoo is faster). "
        "`after / before` = plain `session.run` p50 / `Classifier.run` p50 in the same rounds.",
        "",
        "| model | batch | winner | zoo p50 ms | fastest peer | peer p50 ms | zoo / peer | target | before p50 ms | "
        "after / before |",
        "|---|---:|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for cell in report["cells"]:
        model, size = cell["model"], cell["batch_size"]
        zoo, before = _row(report, model, "zoo", size), _row(report, model, "ort_session", size)
        peer = _row(report, model, cell["fastest_peer"], size) if cell["fastest_peer"] else None
        against = (
            f"{LABELS[peer['backend']]} | {_ms(peer['p50_ms'])} | {cell['zoo_vs_peer']:.2f}x"
            if peer and cell["zoo_vs_peer"] is not None
            else "- | - | -"
        )
        lines.append(
            f"| {model} | {size} | {LABELS[cell['winner']]} | {_ms(zoo['p50_ms'])} | {against} | "
            f"{_verdict(cell)} | {_ms(before['p50_ms'])} | {cell['after_vs_before']:.2f}x |"
        )
    kept = [c for c in report["cells"] if c["zoo_keeps_up"]]
    judged = [c for c in report["cells"] if c["zoo_keeps_up"] is not None]
    twins = [c["after_vs_before"] for c in report["cells"] if c["batch_size"] > 1 and c["after_vs_before"]]
    gauge = (
        f" Noise gauge: above batch 1 the zoo's path and plain `session.run` make the same call on the same "
        f"session, so their ratio should be 1.00x; in this run it ranged from {min(twins):.2f}x to "
        f"{max(twins):.2f}x: a cell's verdict is only as sure as that."
        if twins
        else ""
    )
    lines += [
        "",
        f"Target met in {len(kept)} of {len(judged)} cells.{gauge}",
        "",
        "## Throughput",
        "",
        "![Throughput against batch size](img/throughput.png)",
        "",
    ]
    winners = {(c["model"], c["batch_size"]): c["winner"] for c in report["cells"]}
    for model in report["models"]:
        lines += [
            f"### {model}",
            "",
            "| batch | backend | p50 ms | p99 ms | images/s | x call | calls |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in (r for r in report["results"] if r["model"] == model):
            if "missing" in r:
                lines.append(f"| {r['batch_size']} | {LABELS[r['backend']]} | missing: {r['missing']} | | | | |")
                continue
            name = LABELS[r["backend"]]
            name = f"**{name}** (fastest)" if winners[model, r["batch_size"]] == r["backend"] else name
            lines.append(
                f"| {r['batch_size']} | {name} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | "
                f"{r['images_per_s']:,.0f} | {r['speedup_vs_call']:.2f} | {r['runs']} |"
            )
        lines.append("")
    lines += [
        "## Throughput as a fraction of the measured peak",
        "",
        "FLOPs per image count 2 x multiply-accumulates of the Conv2D and Dense layers (bias, activations, pooling "
        "and softmax left out; x2 for the flagship's test-time flip). The peak is the fp32 GEMM rate measured above "
        f"({peak['gflops']:.1f} GFLOP/s): a share near or above 100% means the model runs as fast as a large "
        "matrix product (convolutions with Winograd kernels need fewer multiplies than counted here).",
        "",
        "| model | MFLOPs/image | best fp32 backend | images/s | GFLOP/s | % of measured peak |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for model, facts in report["models"].items():
        best = facts["best_fp32"]
        lines.append(
            f"| {model} | {facts['flops_per_image'] / 1e6:.2f} | {LABELS[best['backend']]}, batch "
            f"{best['batch_size']} | {best['images_per_s']:,.0f} | {best['gflops']:.1f} | "
            f"{best['fraction_of_peak']:.0%} |"
        )
    lines += [
        "",
        "## Files",
        "",
        "| model | fp32 ONNX | int8 ONNX | int8 test acc. (fp32) | int8 same top-1 | LiteRT file |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for model, facts in report["models"].items():
        fp32, int8, tflite = facts["fp32"], facts["int8"], facts["tflite"]
        lite = f"{tflite['bytes'] / 1e6:.2f} MB" if "bytes" in tflite else f"missing: {tflite['missing']}"
        lines.append(
            f"| {model} | {fp32['bytes'] / 1e6:.2f} MB | {int8['bytes'] / 1e6:.2f} MB | "
            f"{int8['test_accuracy']:.4f} ({fp32['test_accuracy']:.4f}) | {int8['top1_agreement']:.2%} | "
            f"{lite} |"
        )
    if report["sweep"]:
        sweep = report["sweep"]
        cells = sorted({(r["precision"], r["batch_size"]) for r in sweep})
        lines += [
            "",
            "## Session tuning",
            "",
            f"`{sweep[0]['model']}` through `Classifier.run` with one ONNX Runtime session knob changed at a "
            "time from the defaults of `fashionzoo.runtime.session.SessionSettings` (graph optimisation `all`, "
            "threads = ONNX Runtime's choice, sequential execution, memory arena and memory pattern on), all "
            "settings of a batch size interleaved. Each cell: p50 ms (defaults' p50 / this p50; above 1 is "
            "faster).",
            "",
            "| setting | " + " | ".join(f"{p} batch {b}" for p, b in cells) + " |",
            "|---|" + "---:|" * len(cells),
        ]
        for setting in dict.fromkeys(r["setting"] for r in sweep):
            found = {(r["precision"], r["batch_size"]): r for r in sweep if r["setting"] == setting}
            lines.append(
                f"| `{setting}` | "
                + " | ".join(f"{found[c]['p50_ms']:.3f} ({found[c]['vs_defaults']:.2f}x)" for c in cells)
                + " |"
            )
        cores = m["cpu_physical_cores"]
        lines += [
            "",
            f"`intra_op_threads={cores}` is the defaults in effect for batches above one (ONNX Runtime "
            "runs one thread per physical core), so its distance from 1.00x measures the run's noise. "
            "Verdict:",
            "",
        ]
        lines += [f"- {verdict}" for verdict in sweep_verdicts(sweep, cores)]
    return "\n".join([*lines, ""])


def write(report: dict[str, Any], out: Outputs = DOCS) -> None:
    """The chart and the page from the JSON document."""
    plot(report, out.chart)
    with atomic_open(out.page) as handle:
        handle.write(render(report))


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models (default: every model with released weights)")
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a local .weights.h5 file for a model (repeatable)",
    )
    parser.add_argument(
        "--batch-sizes", default="1,64,1024", type=lambda text: tuple(int(part) for part in text.split(","))
    )
    parser.add_argument("--threads", type=int, help="threads for every backend (default: see the page)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=12.0,
        help="time budget per model and batch size, shared by the backends (default 12)",
    )
    parser.add_argument("--sweep-model", help="model of the session-tuning sweep (default: cnn if benchmarked)")
    parser.add_argument("--sweep-seconds", type=float, default=8.0, help="sweep time per batch size (default 8)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the session-tuning sweep")
    parser.add_argument("--data-dir", help="folder of Fashion-MNIST IDX files (exports and quantisation need it)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="folder for results.json, benchmarks.md and img/throughput.png (default: the committed files for a run "
        "of every released model on its shipped weights, else runs/benchmarks)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="regenerate the page and chart from the JSON (the committed one, or --out's)",
    )
    args = parser.parse_args()
    try:
        names = [] if args.render_only else model_names(args)
        out = outputs(args, names)
        if args.render_only:
            report = json.loads(out.results.read_text(encoding="utf-8"))
        else:
            if out == Outputs.in_folder(SCRATCH):
                print(
                    f"not the docs' run (every released model on its shipped weights): writing into "
                    f"{_shown(SCRATCH)}/, the committed figures are left alone (--out DIR to choose)",
                    file=sys.stderr,
                )
            report = measure(args, names)
            with atomic_open(out.results) as handle:
                json.dump(report, handle, indent=2)
        write(report, out)
    except (FashionZooError, OSError) as error:
        sys.exit(f"benchmarks/run.py: error: {error}")
    written = [out.page, out.chart] if args.render_only else [out.results, out.page, out.chart]
    print("wrote " + ", ".join(_shown(path) for path in written))


if __name__ == "__main__":
    main()
