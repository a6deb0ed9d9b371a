"""A real local Ray cluster for the tests: ``ray start --head`` and worker nodes on 127.0.0.1, stopped after.

The head takes no tasks (``--num-cpus=0``): trials run on the worker nodes, which a test can kill (its raylet and
every process of it, as a machine that dies) and replace. Every port is one of the cluster's own and its files live in
a temp dir, so it runs beside another Ray and stops only its own processes (``ray stop`` would stop every Ray here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from tests.services import free_port, free_ports

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


#: Ports a node would otherwise take by default (two nodes on one host would then collide); worker processes keep
#: Ray's default range: each raylet takes ports free in it, so nodes share it safely
NODE_PORTS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


def _ports(flags: tuple[str, ...], *avoid: int) -> list[str]:
    """``flag=port`` for each flag: distinct free ports, none of ``avoid`` (chosen, not yet bound)."""
    return [f"{flag}={port}" for flag, port in zip(flags, free_ports(len(flags), *avoid), strict=True)]


class RayCluster:
    """A running cluster: its address, and worker nodes to add or kill."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.workers: dict[str, int] = {}  # name -> node manager port (identifies its raylet)

    def _start(self, *args: str) -> None:
        done = subprocess.run([RAY, "start", *args], capture_output=True, text=True, env=ENV, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start_head(self) -> None:
        """Start the head node (GCS), which runs no task."""
        self._start(
            "--head",
            f"--port={self.port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={self.folder}",
            *_ports(("--ray-client-server-port", *NODE_PORTS), self.port),
        )

    def add_worker(self, name: str, cpus: int = 2) -> None:
        """Start a worker node with ``cpus`` CPUs, and wait until the cluster counts them."""
        ports = _ports(NODE_PORTS)
        self._start(
            f"--address={self.address}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus}",
            "--disable-usage-stats",
            *ports,
        )
        self.workers[name] = int(ports[0].split("=")[1])
        self.wait_for_cpus()

    def cpus(self) -> float:
        """The CPUs the live nodes of the cluster offer."""
        script = (
            f"import json, ray; ray.init(address='{self.address}', logging_level='ERROR', log_to_driver=False); "
            "print('CPUS', json.dumps(ray.cluster_resources().get('CPU', 0)), flush=True)"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120)
        # Ray may print after it (on a busy machine: '(2) raylet has lagging heartbeats ...'): take the marked line
        found = [line for line in done.stdout.splitlines() if line.startswith("CPUS ")]
        return float(json.loads(found[-1].removeprefix("CPUS "))) if done.returncode == 0 and found else 0.0

    def wait_for_cpus(self, timeout_s: float = 60.0) -> None:
        """Wait until the cluster counts the CPUs of the live workers, exactly: a killed node's are gone only once
        Ray's health checks have marked it dead, seconds later, and a sweep started before then sees them."""
        deadline = time.monotonic() + timeout_s
        while self.cpus() != 2 * len(self.workers):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray's worker nodes did not join (or leave) within {timeout_s:.0f} s")
            time.sleep(0.5)

    def kill_worker(self, name: str) -> int:
        """SIGKILL a worker node, raylet and all (as a machine that dies); returns how many processes died."""
        port = self.workers.pop(name)
        raylets = [
            p for p in psutil.process_iter(["cmdline"]) if f"--node_manager_port={port}" in (p.info["cmdline"] or [])
        ]
        victims = []
        for raylet in raylets:
            victims.extend([raylet, *raylet.children(recursive=True)])
        for proc in victims:
            with suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=10)
        return len(victims)

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster: those whose command line names its temp dir or its head's port (the client
        server names the head by the host's own address), and their children (Ray's agents, renamed
        ``ray::DashboardAgent``, name neither, and outlived a killed raylet by minutes)."""
        head = re.compile(rf":{self.port}\b")
        mine: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            line = " ".join(proc.info["cmdline"] or [])
            if str(self.folder) in line or head.search(line):
                mine[proc.pid] = proc
                with suppress(psutil.Error):
                    mine.update((child.pid, child) for child in proc.children(recursive=True))
        return [p for pid, p in mine.items() if pid != os.getpid()]


@contextmanager
def ray_cluster(workers: int = 1) -> Iterator[RayCluster]:
    """Start a head and ``workers`` worker nodes; yield the cluster; kill its processes and remove its files."""
    folder = Path(tempfile.mkdtemp(prefix="gr-ray-"))  # short: Ray's socket paths must fit in 107 characters
    cluster = RayCluster(folder)
    try:
        cluster.start_head()
        for i in range(workers):
            cluster.add_worker(f"w{i}")
        yield cluster
    finally:
        for _ in range(3):
            procs = cluster.processes()
            if not procs:
                break
            for proc in procs:
                with suppress(psutil.NoSuchProcess):
                    proc.send_signal(signal.SIGKILL)
            psutil.wait_procs(procs, timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
