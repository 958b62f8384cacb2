"""A real Ray cluster of several nodes on this machine, every process bound to 127.0.0.1, for tests and measurements.

Each node is a ``ray start --block`` process in a session of its own, so that everything it starts (GCS, raylet,
agents, workers) can be found by that session id and killed on :meth:`LocalCluster.stop`, whatever state the
cluster is in, without touching any other Ray instance of the machine (``ray stop`` would stop them all).

Loopback only takes two settings, both for Ray's own address resolution, which turns 127.0.0.1 into the machine's
routable address (ray-project/ray#59110):

* the head node and every driver run with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (:data:`LOOPBACK_ENV`), Ray's
  single-machine mode, in which 127.0.0.1 stays 127.0.0.1;
* that mode refuses to start a worker node, so worker nodes run ``ray start`` (the real command) with the address
  resolution that keeps 127.0.0.1 as given (:data:`WORKER_START`); the node then takes 127.0.0.1 as its own
  address, as seen from the head.

Ports are free ones the kernel hands out, so another process can take one between the choice and ``ray start``'s
bind (Ray's own processes bind ports of that range as the head starts): a node that exits with "Address already in use"
is killed with its session and the cluster started again on other ports, up to :data:`START_ATTEMPTS` times.

Token authentication is on, with a token of the cluster's own in every node's and driver's environment
(``RAY_AUTH_TOKEN``), so that the cluster neither reads nor writes ``~/.ray/auth_token``: Ray turns token
authentication on for a new cluster when that file exists, and a driver given an explicit address would then have
no token.

Usage::

    with LocalCluster(head_cpus=1, worker_cpus=[1, 1]) as cluster:
        subprocess.run([..., "--address", cluster.address], env=cluster.driver_env())

``python tests/ray_cluster.py HEAD_CPUS WORKER_CPUS...`` starts one and prints its address until interrupted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from helpers import free_port

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
WORKER_START = (
    "import sys; from ray._private import services; from ray.scripts.scripts import main; "
    "services.resolve_ip_for_localhost = lambda host: host; sys.exit(main())"
)
RAY = Path(sys.executable).with_name("ray")
START_ATTEMPTS = 3
PORT_TAKEN = "Address already in use"
"""What a node prints when a port chosen for it was taken before it could bind it."""


class NodeExited(RuntimeError):
    """A node of the cluster exited while it was being waited for; ``output`` is its whole log (the message ends
    with its end)."""

    def __init__(self, output: str) -> None:
        super().__init__(f"a Ray node exited; the end of its output:\n{output[-2000:]}")
        self.output = output


def _session_members(session_ids: set[int]) -> list[int]:
    """The processes whose session id is one of ``session_ids``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) in session_ids:  # state, ppid, pgrp, session
                members.append(int(entry.name))
    return members


class LocalCluster:
    """A head node and worker nodes (``ray start``) on 127.0.0.1; :attr:`address` is the GCS address."""

    def __init__(
        self,
        head_cpus: int = 1,
        worker_cpus: Sequence[int] = (1,),
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.head_cpus, self.worker_cpus, self.timeout = head_cpus, list(worker_cpus), timeout
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.env = {**os.environ, **auth, **(env or {})}
        self.port = 0
        self.address = ""
        self.temp_dir = tempfile.mkdtemp(prefix="fzray-", dir="/tmp")  # short: Ray's socket paths live under it
        self.nodes: list[subprocess.Popen] = []
        self.logs: list[Path] = []  # each node's output

    def driver_env(self) -> dict[str, str]:
        """The environment of a driver process (a ``fashionzoo`` command) that connects to :attr:`address`."""
        return {**self.env, **LOOPBACK_ENV}

    def _start(self, command: list[str], env: dict[str, str], log: str) -> None:
        self.logs.append(Path(self.temp_dir) / log)
        with open(self.logs[-1], "wb") as output:
            self.nodes.append(
                subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
            )

    def start(self) -> LocalCluster:
        """Start the head node, then each worker node; again on other ports if one of them found its port taken."""
        for _ in range(START_ATTEMPTS - 1):
            try:
                return self._start_nodes()
            except NodeExited as exited:
                if PORT_TAKEN not in exited.output:
                    raise
                self._kill_nodes()
        return self._start_nodes()

    def _start_nodes(self) -> LocalCluster:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        common = ["--disable-usage-stats", "--temp-dir", self.temp_dir, "--block"]
        self._start(
            [
                str(RAY),
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--num-cpus",
                str(self.head_cpus),
                "--include-dashboard=false",
                "--ray-client-server-port",
                str(free_port()),
                *common,
            ],
            self.driver_env(),
            "head.log",
        )
        self._wait_for_nodes(1)
        for i, cpus in enumerate(self.worker_cpus, 1):  # one at a time: nodes of one address started together
            self._start(
                [
                    sys.executable,
                    "-c",
                    WORKER_START,
                    "start",
                    "--address",
                    self.address,
                    "--num-cpus",
                    str(cpus),
                    *common,
                ],
                {**self.env, "RAY_USAGE_STATS_ENABLED": "0"},
                f"worker-{i}.log",
            )
            self._wait_for_nodes(1 + i)  # can each take the other's raylet for their own and time out
        return self

    def _wait_for_nodes(self, count: int) -> None:
        """Wait until ``count`` nodes are up (``ray status`` lists them as active)."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for node, log in zip(self.nodes, self.logs, strict=True):
                if node.poll() is not None:
                    raise NodeExited(log.read_text())
            status = subprocess.run(
                [str(RAY), "status", "--address", self.address], env=self.driver_env(), capture_output=True, text=True
            )
            if status.returncode == 0 and status.stdout.count(" node_") >= count:
                return
            time.sleep(1)
        raise RuntimeError(f"Ray cluster at {self.address}: {count} nodes not up after {self.timeout:.0f} s")

    def stop(self) -> None:
        """Kill every process of the nodes' sessions (by id), then remove the temporary folder."""
        self._kill_nodes()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _kill_nodes(self) -> None:
        """Kill every process of the nodes' sessions (by id) and forget the nodes."""
        sessions = {node.pid for node in self.nodes}
        for _ in range(3):  # a process may fork while we look
            for pid in _session_members(sessions):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        for node in self.nodes:
            node.wait()
        self.nodes, self.logs = [], []

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the cluster on kill as on Ctrl-C
    with LocalCluster(int(sys.argv[1]), [int(n) for n in sys.argv[2:]]) as cluster:
        print(f"Ray cluster at {cluster.address} (driver env: {LOOPBACK_ENV}); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
