"""A real Prometheus server for the tests, scraping given targets every second; started in a temp dir, stopped after.

Debian's ``prometheus`` package is installed with apt when missing (root only; CI runs as root).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.services import apt_install, free_port, wait_for_http


def ensure_installed() -> str | None:
    """Install Prometheus with apt if missing; the reason it cannot, or ``None`` when it is there."""
    return apt_install(["prometheus"], lambda: shutil.which("prometheus") is not None)


class PrometheusServer:
    """A running server: its URL and its HTTP query API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` evaluates to now (``[]`` when nothing matches yet)."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(address, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return list(body["data"]["result"])


@contextmanager
def prometheus_server(targets: list[str], folder: Path) -> Iterator[PrometheusServer]:
    """Start Prometheus scraping ``targets`` (``host:port``) every second; yield it; stop it and remove its data."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: greenai\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
    )
    log = open(folder / "prometheus.log", "w")  # noqa: SIM115 (closed below, after the process)
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = PrometheusServer(f"http://127.0.0.1:{port}")
    try:
        wait_for_http(f"{server.url}/-/ready", proc, timeout_s=60, log=folder / "prometheus.log", what="Prometheus")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(folder / "data", ignore_errors=True)
