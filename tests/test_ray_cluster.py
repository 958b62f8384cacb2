"""The tests' own Ray cluster (``ray_cluster.LocalCluster``): a port taken between its choice and the node's bind
starts the cluster again on other ports instead of failing the tests that use it."""

from __future__ import annotations

import socket
import subprocess

import pytest

pytest.importorskip("ray", reason='Ray is not installed (pip install "fashionzoo[ray]"; .ci/run installs it)')
pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster at a time under pytest-xdist

import ray_cluster  # noqa: E402 (after the skip: it needs Ray)
from helpers import free_port  # noqa: E402
from ray_cluster import RAY, LocalCluster  # noqa: E402


@pytest.mark.slow  # the head node that finds its port taken takes about 50 s to give up
def test_a_head_node_whose_port_was_taken_starts_again_on_other_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The head's client-server port is held by this test (as another process took it in a CI run): the head exits
    with "Address already in use", and the cluster comes up on fresh ports."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        first_port = free_port()
        chosen = iter([first_port, taken.getsockname()[1]])  # the first try's GCS port, then its client-server port
        monkeypatch.setattr(ray_cluster, "free_port", lambda: next(chosen, None) or free_port())
        with LocalCluster(head_cpus=1, worker_cpus=[]) as cluster:
            assert cluster.port != first_port  # a second try, on other ports
            status = subprocess.run(
                [str(RAY), "status", "--address", cluster.address],
                env=cluster.driver_env(),
                capture_output=True,
                text=True,
            )
            assert status.returncode == 0, status.stderr
            assert len(cluster.nodes) == 1 and cluster.nodes[0].poll() is None
