"""A real PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` in a temp dir on 127.0.0.1, stopped after.

Debian's ``postgresql`` package is installed with apt when missing (root only; CI runs as root). PostgreSQL refuses
to run as root, so as root the server runs as the package's ``postgres`` user. Trust authentication on 127.0.0.1 and
a port of its own: it runs beside anything else and leaves nothing behind.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.services import apt_install, free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def ensure_installed() -> str | None:
    """Install PostgreSQL with apt if missing; the reason it cannot, or ``None`` when it is there."""
    return apt_install(["postgresql"], lambda: bool(_bin("initdb") and _bin("pg_ctl") and _bin("pg_isready")))


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PostgresServer:
    """A running server: its URL, and ``restart`` / ``drop_connections`` to test what a sweep survives."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.data = folder / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``pg_ctl`` on this server's data dir."""
        cmd = _as_owner([str(_bin("pg_ctl")), "-D", str(self.data), "-w", "-t", "30", *args])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        """Start (or start again) the server."""
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.folder}"
        done = self.pg_ctl("-l", str(self.folder / "server.log"), "-o", options, "start")
        if done.returncode != 0:
            log = (self.folder / "server.log").read_text()[-2000:] if (self.folder / "server.log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {done.stdout}{done.stderr}\n{log}")

    def restart(self) -> None:
        """Stop at once (``immediate``: every connection dropped mid-sentence) and start again."""
        self.pg_ctl("-m", "immediate", "stop")
        self.start()

    def drop_connections(self) -> int:
        """Terminate every other client connection, as a failover or a network cut does; returns how many."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sqlalchemy.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    )
                ).fetchall()
        finally:
            engine.dispose()
        return len(rows)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a fresh server; yield it; stop it and remove its files."""
    folder = Path(tempfile.mkdtemp(prefix="greenai-pg-"))  # not under pytest's root-only tmp: postgres must reach it
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        server = PostgresServer(folder, free_port())
        init = subprocess.run(
            _as_owner([str(_bin("initdb")), "-D", str(server.data), "-A", "trust", "-U", "postgres", "--no-sync"]),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr[-1000:]}")
        server.start()
        deadline = time.monotonic() + 30
        while subprocess.run([str(_bin("pg_isready")), "-h", "127.0.0.1", "-p", str(server.port)]).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not accept connections within 30 s")
            time.sleep(0.2)
        try:
            yield server
        finally:
            server.pg_ctl("-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
