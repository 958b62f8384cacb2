"""``fashionzoo serve --engine ray`` on a real two-node Ray cluster on 127.0.0.1 (tests/ray_cluster.py): the same app
as a Ray Serve deployment, a replica on each node, answering as the local server and ``predict --json`` do, and
taken down on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

import fashionzoo
from fashionzoo.registry import DEFAULT_MODEL

pytest.importorskip("ray.serve", reason='Ray Serve is not installed (pip install "fashionzoo[ray]")')
pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster at a time under pytest-xdist

from helpers import CLI_ENV, free_port, wait_for  # noqa: E402
from ray_cluster import LocalCluster, _session_members  # noqa: E402 (after the skip: it needs Ray)
from test_serve import healthy, photos, post, predict_json, refusal, uploads  # noqa: E402

REPLICA_TITLE = b"ray::ServeReplica:fashionzoo:ZooReplica"
"""The process title of a replica of the app."""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalCluster]:
    """A head node and a worker node of one CPU each, running this checkout's fashionzoo (its nodes given five
    minutes to start on a busy machine); killed at the end."""
    source = str(Path(fashionzoo.__file__).resolve().parents[1])
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
        "RAY_AUTH_MODE": "disabled",  # the same for nodes and drivers, whether or not ~/.ray/auth_token exists
    }
    with LocalCluster(head_cpus=1, worker_cpus=[1], env=env, timeout=300) as cluster:
        yield cluster


def _replicas_per_node(cluster: LocalCluster) -> list[int]:
    counts = []
    for node in cluster.nodes:
        titles = []
        for pid in _session_members({node.pid}):
            try:
                titles.append(Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                continue
        counts.append(sum(title.startswith(REPLICA_TITLE) for title in titles))
    return counts


@pytest.mark.slow  # a two-node Ray cluster
def test_the_app_as_a_ray_serve_deployment_on_two_nodes(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fashionzoo",
                "serve",
                "--engine",
                "ray",
                "--address",
                ray_cluster.address,
                "--replicas",
                "2",
                "--port",
                str(port),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**ray_cluster.driver_env(), **CLI_ENV},
        )
    try:
        announced = "with Ray Serve: 2 replicas on a cluster of 2 nodes"  # said once every replica is ready
        ready = wait_for(lambda: process.poll() is not None or announced in log.read_text(), timeout=400)
        assert ready and process.poll() is None and healthy(url), log.read_text()[-3000:]
        assert _replicas_per_node(ray_cluster) == [1, 1]  # one replica on each node
        paths = photos()[:6]
        answer = post(url, uploads(paths), top_k=3)
        assert answer.status_code == 200, answer.text[:500]
        assert answer.json()["results"] == predict_json("--top-k", "3", *map(str, paths))
        assert refusal(post(url, [("empty.png", b"")]), 422) == (
            "empty.png: the file is empty (0 bytes); re-save or re-download it"
        )
        assert httpx2.get(f"{url}/v1/models").json()["default"] == DEFAULT_MODEL
        assert "/v1/predict" in httpx2.get(f"{url}/openapi.json").json()["paths"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, log.read_text()[-3000:]
        assert _replicas_per_node(ray_cluster) == [0, 0]  # the application was taken down
        assert not healthy(url)
    finally:
        process.kill()
        process.wait()
