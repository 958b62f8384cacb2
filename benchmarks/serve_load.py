"""Load on ``fashionzoo serve``: concurrent clients sending real photos, against ``predict`` on the same photos.

Usage: python benchmarks/serve_load.py [--photos DIR] [--requests N] [--clients N] [--model NAME]
       [--address HOST:PORT [--replicas N]]   (one JSON object; --address: serve --engine ray on that cluster)

The server runs as ``fashionzoo serve`` on a free port of 127.0.0.1 (a subprocess, stopped by its pid at the end);
``--clients`` threads, each with its own keep-alive connection, send ``--requests`` requests of one photo each, the
photos of ``--photos`` (every image file under it, sorted) taken in turn. Reported: the status of every answer (the
aim: no 5xx), the latency per request (p50, p90, p99, max), the throughput, and the server's resident memory (VmRSS)
when it is ready, after the first tenth of the requests and at the end (VmHWM: its peak). Then ``fashionzoo predict
--json`` classifies the same list of photos in one process, timed from its start (model loading included, as a user
waits for it) and without it (its own files/s once loaded is not printed: the whole run is timed). Run it niced on a
shared machine; the clients run on the same cores as the server.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx2

from fashionzoo.core.machine import machine_info
from fashionzoo.registry.catalogue import DEFAULT_MODEL

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/real-photos"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory(pid: int) -> dict[str, int]:
    """The process's resident memory now and at its peak, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) // 1024 for key in ("VmRSS", "VmHWM")}


def start_server(model: str, port: int, log: object, ray: list[str]) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "fashionzoo", "serve", "--port", str(port), "--model", model, "--queue", "64", *ray],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx2.get(f"{url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx2.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"the server did not start (exit status {server.poll()})")


def load(url: str, photos: list[Path], requests: int, clients: int, on_tenth: Callable[[], None]) -> dict:
    """``requests`` requests of one photo each from ``clients`` threads; statuses and latencies."""
    contents = {path: path.read_bytes() for path in photos}
    work = iter(itertools.islice(itertools.cycle(photos), requests))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()

    def client() -> None:
        with httpx2.Client(timeout=120) as session:
            while True:
                with lock:
                    path = next(work, None)
                if path is None:
                    return
                began = time.perf_counter()
                try:
                    response = session.post(f"{url}/v1/predict", files=[("files", (path.name, contents[path]))])
                    status = response.status_code
                except httpx2.HTTPError as error:
                    status = 0
                    errors[type(error).__name__] += 1
                elapsed = time.perf_counter() - began
                with lock:
                    latencies.append(elapsed)
                    statuses[status] += 1
                    if len(latencies) == requests // 10:
                        on_tenth()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "requests": len(latencies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors_5xx": sum(v for k, v in statuses.items() if 500 <= k < 600),
        "connection_errors": dict(errors),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "latency_ms": {
            "p50": quantile(0.50),
            "p90": quantile(0.90),
            "p99": quantile(0.99),
            "max": round(1000 * ordered[-1], 1),
            "mean": round(1000 * statistics.fmean(ordered), 1),
        },
    }


def predict_run(model: str, photos: list[Path], requests: int) -> dict:
    """``fashionzoo predict --json`` on the same photos in the same order, timed from the process's start."""
    listed = list(itertools.islice(itertools.cycle(photos), requests))
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "fashionzoo", "predict", "--json", "--model", model, *map(str, listed)],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - began
    lines = result.stdout.splitlines()
    startup = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "fashionzoo", "predict", "--json", "--model", model, str(listed[0])],
        capture_output=True,
    )
    startup = time.perf_counter() - startup
    return {
        "images": len(lines),
        "failures": sum("error" in json.loads(line) for line in lines),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(lines) / seconds, 1),
        "startup_seconds": round(startup, 2),
        "images_per_s_after_startup": round(len(lines) / max(seconds - startup, 1e-9), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="a folder of photos (every image file under it)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--address", help="serve with --engine ray on this Ray cluster (memory: the driver's only)")
    parser.add_argument("--replicas", type=int, default=2, help="with --address: replicas of the app")
    args = parser.parse_args()
    ray = ["--engine", "ray", "--address", args.address, "--replicas", str(args.replicas)] if args.address else []
    photos = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not photos:
        raise SystemExit(f"no photos under {args.photos}")
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        server = start_server(args.model, port, log, ray)
        try:
            memory_mib = {"ready": memory(server.pid)}
            report = load(
                f"http://127.0.0.1:{port}",
                photos,
                args.requests,
                args.clients,
                lambda: memory_mib.update(after_a_tenth=memory(server.pid)),
            )
            memory_mib["end"] = memory(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    predict = predict_run(args.model, photos, args.requests)
    print(
        json.dumps(
            {
                "model": args.model,
                "photos": len(photos),
                "clients": args.clients,
                "engine": f"ray, {args.replicas} replicas" if args.address else "local",
                "server": {**report, "memory_mib": memory_mib},
                "predict": predict,
                "server_against_predict": round(report["requests_per_s"] / predict["images_per_s"], 2),
                "server_against_predict_after_startup": round(
                    report["requests_per_s"] / predict["images_per_s_after_startup"], 2
                ),
                "niceness": os.nice(0),
                "machine": machine_info("cpu"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
