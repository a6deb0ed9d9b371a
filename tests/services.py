"""What the tests need to run real services: a free port on 127.0.0.1, and Debian packages installed when missing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    return free_ports(1)[0]


def free_ports(count: int, *avoid: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now, none of ``avoid`` (ports chosen but not yet bound).

    The sockets are held together while the kernel picks, so no port repeats: ports picked one at a time can (a Ray
    node once got one port for two of its components and failed to start).
    """
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count + len(avoid))]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [port for port in (int(s.getsockname()[1]) for s in sockets) if port not in avoid][:count]


def apt_install(packages: list[str], present: Callable[[], bool]) -> str | None:
    """Install Debian ``packages`` with apt unless ``present()``; the reason it cannot, or ``None`` when done.

    Needs root and apt-get (CI runs as root); the package lists are refreshed once if the first try fails.
    """
    if present():
        return None
    names = " ".join(packages)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{names} not installed and cannot be (needs root and apt-get): apt-get install {names}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if subprocess.run(install, capture_output=True, env=env, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
        if done.returncode != 0:
            return f"apt-get install {names} failed: {done.stderr[-500:]}"
    return None if present() else f"{names} installed, but the commands the tests need are missing"


def wait_for_http(url: str, proc: subprocess.Popen, *, timeout_s: float, log: Path, what: str) -> None:
    """Wait until ``url`` answers 200 while ``proc`` (the server) runs; raise with the tail of its ``log`` if not."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not start: {log.read_text()[-3000:] if log.exists() else 'no log'}")
        time.sleep(0.3)
