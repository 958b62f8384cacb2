"""Produce every benchmark figure of the docs in one command, on a quiet machine.

    python benchmarks/run.py [NAME ...] [--weights NAME=FILE ...] [--batch-sizes 1,8,64,256,1024] [--threads N]
                             [--seconds 1.5] [--sweep-model cnn] [--no-sweep] [--data-dir DIR] [--render-only]

Runs ``fashionzoo.benchmark.run`` for every model with released weights (or the names given), the session-tuning
sweep for one model, and writes ``benchmarks/results.json``, the chart ``docs/img/throughput.png`` and the page
``docs/benchmarks.md`` (generated from the JSON; ``--render-only`` regenerates both from an existing JSON).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from fashionzoo._files import FashionZooError, atomic_open
from fashionzoo.registry import REGISTRY, get_entry

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
PAGE = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "img" / "throughput.png"
NOISE = 0.05
"""A session setting counts as faster than the defaults only if it beats them by more than this fraction."""
BUSY_SHARE = 0.1
"""Share of the CPUs used by other processes during the run above which the page warns of a busy machine."""
LABELS = {"keras_predict": "Keras predict", "keras_call": "Keras call (tf.function)", "onnx_fp32": "ORT fp32",
          "onnx_int8": "ORT int8"}  # fmt: skip


def _progress(done: int, total: int, label: str) -> None:
    print(f"[{done}/{total}] {label}", file=sys.stderr, flush=True)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark (and the sweep) and return the JSON document."""
    from fashionzoo import benchmark

    weights = dict(item.split("=", 1) for item in args.weights)
    names = args.names or [entry.name for entry in REGISTRY.values() if entry.weights]
    if not names:
        raise FashionZooError("no model has released weights yet: name the models and pass --weights NAME=FILE "
                              "(e.g. --weights cnn=runs/cnn/cnn.weights.h5)")  # fmt: skip
    names = [get_entry(name).name for name in names]
    report = benchmark.run(names, args.batch_sizes, threads=args.threads, max_seconds=args.seconds,
                           progress=_progress, weights=weights, data_dir=args.data_dir)  # fmt: skip
    report["sweep"] = []
    if not args.no_sweep:
        model = get_entry(args.sweep_model).name if args.sweep_model else ("cnn" if "cnn" in names else names[0])
        report["sweep"] = benchmark.sweep(model, max_seconds=args.seconds, progress=_progress,
                                          weights=weights.get(model), data_dir=args.data_dir)  # fmt: skip
    report["generated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["command"] = " ".join(["python benchmarks/run.py", *sys.argv[1:]])
    return report


def _row(report: dict[str, Any], model: str, backend: str, batch_size: int) -> dict[str, Any] | None:
    return next((r for r in report["results"] if (r["model"], r["backend"], r["batch_size"]) ==
                 (model, backend, batch_size)), None)  # fmt: skip


def targets(report: dict[str, Any], model: str) -> list[tuple[str, str, bool | None]]:
    """The issue's targets for ``model``: (target, measured ratio, met or None when not measured)."""
    fp32_1, fp32_1024 = _row(report, model, "onnx_fp32", 1), _row(report, model, "onnx_fp32", 1024)
    fp32_256, int8_256 = _row(report, model, "onnx_fp32", 256), _row(report, model, "onnx_int8", 256)
    keras_1024 = [r["images_per_s"] for b in ("keras_predict", "keras_call") if (r := _row(report, model, b, 1024))]
    checks = [
        ("ORT fp32 at batch 1 >= 30x faster than the direct Keras call", fp32_1 and fp32_1["speedup_vs_call"], 30),
        ("ORT fp32 at batch 1 >= 300x faster than Keras predict", fp32_1 and fp32_1["speedup_vs_predict"], 300),
        ("ORT fp32 at batch 1024 >= 2x the throughput of the faster Keras path",
         fp32_1024 and keras_1024 and fp32_1024["images_per_s"] / max(keras_1024), 2),
        ("ORT int8 at batch 256 >= 1.5x the throughput of ORT fp32",
         fp32_256 and int8_256 and int8_256["images_per_s"] / fp32_256["images_per_s"], 1.5),
    ]  # fmt: skip
    return [(label, f"{value:.2f}x" if value else "not measured", value >= goal if value else None)
            for label, value, goal in checks]  # fmt: skip


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
            lines.append(f"{precision}, batch {size}: `{best['setting']}` is {best['vs_defaults']:.2f}x the defaults, "
                         f"beyond the noise ({noise:.0%}): consider it")  # fmt: skip
        else:
            lines.append(f"{precision}, batch {size}: no setting beats the defaults beyond the noise ({noise:.0%})")
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    """Throughput against batch size, log-log, one panel per model and one line per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report["models"])
    cols = min(3, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax, model in zip(axes.flat, models, strict=False):
        for backend, label in LABELS.items():
            points = sorted((r["batch_size"], r["images_per_s"]) for r in report["results"]
                            if r["model"] == model and r["backend"] == backend)  # fmt: skip
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="images/s (batch / p50 latency)", title=model)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(models) :]:
        ax.set_visible(False)
    m = report["machine"]
    fig.suptitle(f"{m['cpu']}, {m['cpu_physical_cores']} cores; onnxruntime {m['onnxruntime']}, "
                 f"TensorFlow {m['tensorflow']}", fontsize=10)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _share(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0%}"


def _mark(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def _busy_warning(m: dict[str, Any]) -> list[str]:
    """A warning when other processes competed for the CPUs during the timing run."""
    share = m.get("others_cpu_share")
    if share is None or share <= BUSY_SHARE:
        return []
    return [f"> **Measured on a busy machine**: other processes kept {share:.0%} of the CPUs busy during the run, "
            "so latencies are inflated and noisy. Rerun on a quiet machine.", ""]  # fmt: skip


def render(report: dict[str, Any]) -> str:
    """``docs/benchmarks.md`` from the JSON document."""
    m, peak, settings = report["machine"], report["machine"]["peak_fp32"], report["settings"]
    lines = [
        "# Benchmarks: Keras against ONNX Runtime fp32 and int8",
        "",
        f"Generated by `{report['command']}` on {report['generated']} from `benchmarks/results.json`; do not edit by "
        "hand, rerun the script on a quiet machine instead.",
        "",
        *_busy_warning(m),
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu']}, {m['cpu_physical_cores']} physical cores ({m['cores']} logical), {m['cpu_mhz']} MHz |",
        f"| Vector flags | {' '.join(m['cpu_flags']) or '-'} (no `avx512_vnni` means no int8 dot-product unit) |",
        f"| Software | Python {m['python']}, numpy {m['numpy']}, onnxruntime {m['onnxruntime']} "
        f"({', '.join(m['onnxruntime_providers'])}), TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"fashionzoo {m['fashionzoo']} |",
        f"| Threads | {m['threads'] or 'library defaults (ONNX Runtime: one per physical core; TensorFlow: own)'} |",
        f"| Other processes during the run | {_share(m.get('others_cpu_share'))} of the CPUs; load average at the "
        f"end {', '.join(f'{x:.2f}' for x in m['load_average'] or [])} |",
        f"| Platform | {m['platform']} |",
        "",
        "## Method",
        "",
        "Each model is timed with four backends on the same float32 batch (seeded random pixels; the cost of these "
        "models does not depend on pixel values):",
        "",
        "- **Keras predict**: `model.predict(x, batch_size=len(x))`;",
        "- **Keras call**: `model(x, training=False)` inside a `tf.function` with a fixed input signature "
        "(dynamic batch axis, so one trace serves every batch size); an eager `model(x)` call is several times "
        "slower at small batches, so this is the stronger Keras baseline;",
        "- **ORT fp32 / ORT int8**: `InferenceSession.run` on the exported fp32 file and its static int8 "
        "quantisation, with `fashionzoo.runtime.Classifier`'s default session settings.",
        "",
        f"Every cell is warmed up with {settings['warmup']} calls, then timed call by call until "
        f"{settings['repeats']} calls or {settings['max_seconds']} s (at least 3 calls). p50 and p99 are per-batch "
        "latencies; images/s = batch size / p50; speedups are ratios of p50.",
        "",
        "## Targets",
        "",
        "| model | target | measured | |",
        "|---|---|---|---|",
    ]
    for model in report["models"]:
        lines += [f"| {model} | {t} | {value} | {_mark(met)} |" for t, value, met in targets(report, model)]
    lines += ["", "## Throughput", "", "![Throughput against batch size](img/throughput.png)", ""]
    for model in report["models"]:
        lines += [f"### {model}", "", "| batch | backend | p50 ms | p99 ms | images/s | x predict | x call | runs |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {r['batch_size']} | {LABELS[r['backend']]} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                  f"{r['images_per_s']:,.0f} | {r['speedup_vs_predict']:.1f} | {r['speedup_vs_call']:.2f} | "
                  f"{r['runs']} |" for r in report["results"] if r["model"] == model]  # fmt: skip
        lines.append("")
    lines += ["## int8 quantisation", "",
              "| model | fp32 file | int8 file | smaller | fp32 test acc. | int8 test acc. | same top-1 | method |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for model, facts in report["models"].items():
        fp32, int8 = facts["fp32"], facts["int8"]
        lines.append(f"| {model} | {fp32['bytes'] / 1e6:.2f} MB | {int8['bytes'] / 1e6:.2f} MB | "
                     f"{int8['size_ratio']:.1f}x | {fp32['test_accuracy']:.4f} | {int8['test_accuracy']:.4f} | "
                     f"{int8['top1_agreement']:.2%} | {int8['quantization']} |")  # fmt: skip
    lines += ["", "int8 speedup over fp32 (ORT images/s ratio) per batch size:", "",
              "| model | " + " | ".join(f"batch {b}" for b in settings["batch_sizes"]) + " |",
              "|---|" + "---:|" * len(settings["batch_sizes"])]  # fmt: skip
    for model in report["models"]:
        ratios = []
        for size in settings["batch_sizes"]:
            fp32_row, int8_row = _row(report, model, "onnx_fp32", size), _row(report, model, "onnx_int8", size)
            ratios.append(f"{int8_row['images_per_s'] / fp32_row['images_per_s']:.2f}x" if fp32_row and int8_row
                          else "-")  # fmt: skip
        lines.append(f"| {model} | " + " | ".join(ratios) + " |")
    lines += [
        "",
        "## FLOPs and fraction of peak",
        "",
        "FLOPs per image count 2 x multiply-accumulates of the Conv2D and Dense layers (bias, activations, pooling "
        "and softmax are left out). Peak fp32 FLOP/s = cores x GHz x FLOPs per cycle:",
        "",
        f"- cores = {peak['cores']} ({peak['cores_source']});",
        f"- GHz = {peak['ghz']:.3f} ({peak['ghz_source']});" if peak["ghz"] else "- GHz = unknown;",
        f"- FLOPs per cycle = {peak['flops_per_cycle']} ({peak['flops_per_cycle_source']});",
        f"- peak = **{peak['gflops']:.1f} GFLOP/s**." if peak["gflops"] else "- peak = unknown.",
        "",
        "This is a nominal peak, and a share above 100% is possible: where the kernel shows no maximum clock (virtual "
        "machines), the clock is the one `/proc/cpuinfo` reports, below the boost clock the cores reach; and "
        "oneDNN/ONNX Runtime may run 3x3 convolutions with Winograd kernels, which need fewer multiplies than the "
        "direct-convolution FLOPs counted here. Read the shares as model FLOPs per nominal peak, for comparison "
        "between backends, not as hardware utilisation.",
        "",
        "| model | MFLOPs/image | best fp32 backend | GFLOP/s | % of peak | best overall | GFLOP/s (equiv.) | "
        "% of fp32 peak |",
        "|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for model, facts in report["models"].items():
        fp32, best = facts["best_fp32"], facts["best"]
        share = [f"{b['fraction_of_peak']:.0%}" if b["fraction_of_peak"] is not None else "-" for b in (fp32, best)]
        lines.append(f"| {model} | {facts['flops_per_image'] / 1e6:.2f} | {LABELS[fp32['backend']]}, batch "
                     f"{fp32['batch_size']} | {fp32['gflops']:.1f} | {share[0]} | {LABELS[best['backend']]}, batch "
                     f"{best['batch_size']} | {best['gflops']:.1f} | {share[1]} |")  # fmt: skip
    lines += ["", "int8 operations are not fp32 FLOPs: the int8 column counts the same model FLOPs per second for "
              "comparison only.", ""]  # fmt: skip
    if report["sweep"]:
        sweep = report["sweep"]
        cells = sorted({(r["precision"], r["batch_size"]) for r in sweep})
        lines += ["## Session tuning", "",
                  f"`{sweep[0]['model']}` with one ONNX Runtime session knob changed at a time from the defaults of "
                  "`fashionzoo.runtime.SessionSettings` (graph optimisation `all`, threads = ONNX Runtime's choice, "
                  "sequential execution, memory arena and memory pattern on); the settings take turns in rounds so "
                  "that a change of load hits them alike. Each cell: p50 ms (defaults' p50 / this p50; above 1 is "
                  "faster).", "",
                  "| setting | " + " | ".join(f"{p} batch {b}" for p, b in cells) + " |",
                  "|---|" + "---:|" * len(cells)]  # fmt: skip
        for setting in dict.fromkeys(r["setting"] for r in sweep):
            found = {(r["precision"], r["batch_size"]): r for r in sweep if r["setting"] == setting}
            lines.append(f"| `{setting}` | " + " | ".join(f"{found[c]['p50_ms']:.3f} ({found[c]['vs_defaults']:.2f}x)"
                                                          for c in cells) + " |")  # fmt: skip
        cores = m["cpu_physical_cores"]
        lines += ["", f"`intra_op_threads={cores}` is the defaults in effect (ONNX Runtime runs one thread per "
                  "physical core), so its distance from 1.00x measures the run's noise. Verdict:", ""]  # fmt: skip
        lines += [f"- {verdict}" for verdict in sweep_verdicts(sweep, cores)] + [""]
    return "\n".join(lines)


def write(report: dict[str, Any]) -> None:
    """The chart and the page from the JSON document."""
    plot(report, CHART)
    with atomic_open(PAGE) as handle:
        handle.write(render(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models (default: every model with released weights)")
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=FILE",
                        help="a local .weights.h5 file for a model (repeatable)")  # fmt: skip
    parser.add_argument("--batch-sizes", default="1,8,64,256,1024",
                        type=lambda text: tuple(int(part) for part in text.split(",")))  # fmt: skip
    parser.add_argument("--threads", type=int, help="threads for ONNX Runtime and TensorFlow (default: theirs)")
    parser.add_argument("--seconds", type=float, default=1.5, help="time budget per cell (default 1.5)")
    parser.add_argument("--sweep-model", help="model of the session-tuning sweep (default: cnn if benchmarked)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the session-tuning sweep")
    parser.add_argument("--data-dir", help="folder of Fashion-MNIST IDX files (exports and quantisation need it)")
    parser.add_argument("--render-only", action="store_true", help="regenerate the page and chart from the JSON")
    args = parser.parse_args()
    try:
        if args.render_only:
            report = json.loads(RESULTS.read_text(encoding="utf-8"))
        else:
            report = measure(args)
            with atomic_open(RESULTS) as handle:
                json.dump(report, handle, indent=2)
        write(report)
    except FashionZooError as error:
        sys.exit(f"benchmarks/run.py: error: {error}")
    written = [PAGE, CHART] if args.render_only else [RESULTS, PAGE, CHART]
    print("wrote " + ", ".join(str(path.relative_to(ROOT)) for path in written))


if __name__ == "__main__":
    main()
