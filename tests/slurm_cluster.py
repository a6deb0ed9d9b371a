"""A real single-node SLURM cluster for the tests: munge, slurmctld and slurmd started in a temp dir, stopped after.

Debian's ``slurm-wlm`` and ``munge`` are installed with apt when missing (root only; CI runs as root). The cluster
has one node with this machine's CPUs, ``proctrack/linuxproc`` and ``task/none`` (no cgroups needed), no accounting
database, and ports of its own, so it runs beside nothing else and leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.services import apt_install, free_port, free_ports

DAEMONS = ("slurmctld", "slurmd", "munged", "sinfo", "squeue", "scancel", "sbatch")


ACCOUNTING = ("slurmdbd", "sacctmgr", "mariadbd", "mariadb-install-db")


def ensure_installed(accounting: bool = False) -> str | None:
    """Install SLURM and munge (and slurmdbd with MariaDB for job accounting) with apt if missing.

    Returns the reason it cannot, or ``None`` when they are there.
    """
    packages, commands = ["slurm-wlm", "munge"], list(DAEMONS)
    if accounting:
        packages, commands = [*packages, "slurmdbd", "mariadb-server"], [*commands, *ACCOUNTING]
    return apt_install(packages, lambda: all(shutil.which(name) for name in commands))


def _config(folder: Path, host: str, dbd_port: int | None) -> str:
    ctld_port, slurmd_port = free_ports(2, *([dbd_port] if dbd_port else []))
    accounting = (
        f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n"
        # the munge socket for slurmdbd's connections (AuthInfo covers only the cluster's own)
        f"AccountingStoragePort={dbd_port}\nAccountingStoragePass={folder}/munge/munge.socket.2"
        if dbd_port
        else "AccountingStorageType=accounting_storage/none"
    )
    return f"""ClusterName=greenai
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge/munge.socket.2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
{accounting}
JobCompType=jobcomp/none
MinJobAge=300
KillWait=2
InactiveLimit=0
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _dbd_config(folder: Path, host: str, dbd_port: int, db_port: int) -> str:
    return f"""AuthType=auth/munge
AuthInfo=socket={folder}/munge/munge.socket.2
DbdHost={host}
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=root
StorageLoc=slurm_acct_db
PidFile={folder}/slurmdbd.pid
LogFile={folder}/log/slurmdbd.log
"""


def _start_accounting(folder: Path, host: str, dbd_port: int, env: dict[str, str]) -> None:
    """MariaDB (its own data dir and port, no grant tables: only this machine reaches it) and slurmdbd on it."""
    db_port = free_port()
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={folder}/db", "--user=root", "--skip-test-db",
         "--auth-root-authentication-method=normal"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={folder}/db", f"--socket={folder}/mysql.sock", f"--port={db_port}",
         "--bind-address=127.0.0.1", "--user=root", f"--pid-file={folder}/mariadb.pid",
         f"--log-error={folder}/log/mariadb.log", "--skip-grant-tables"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    _wait(lambda: socket.create_connection(("127.0.0.1", db_port), timeout=1).close() is None, "MariaDB")
    dbd_conf = folder / "slurmdbd.conf"  # slurmdbd reads it beside SLURM_CONF, and only if no one else can
    dbd_conf.write_text(_dbd_config(folder, host, dbd_port, db_port))
    dbd_conf.chmod(0o600)
    subprocess.run(["slurmdbd"], check=True, env=env, timeout=30)

    def cluster_added() -> bool:
        add = ["sacctmgr", "-i", "add", "cluster", "greenai"]
        done = subprocess.run(add, capture_output=True, text=True, env=env, timeout=30)
        return done.returncode == 0 or "already exists" in done.stdout + done.stderr

    _wait(cluster_added, "slurmdbd")


def _wait(ready: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout_s:.0f} s")
        time.sleep(0.3)


@contextmanager
def slurm_cluster(folder: Path, *, accounting: bool = False) -> Iterator[dict[str, str]]:
    """Start a cluster in ``folder``; yield the environment that reaches it (``SLURM_CONF``); stop it after.

    With ``accounting``, job accounting too: slurmdbd on a MariaDB of its own, so ``sacct`` (and submitit, which
    asks it) sees every job end, a cancelled or timed-out one included.
    """
    for sub in ("state", "spool", "log", "munge"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    dbd_port = free_port() if accounting else None
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder, host, dbd_port))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pids = [folder / "munge" / "munged.pid", folder / "slurmctld.pid", folder / "slurmd.pid"]
    if accounting:
        pids[1:1] = [folder / "mariadb.pid", folder / "slurmdbd.pid"]
    try:
        subprocess.run(
            ["munged", "--force", f"--socket={folder}/munge/munge.socket.2", f"--pid-file={pids[0]}",
             f"--log-file={folder}/munge/munged.log", f"--seed-file={folder}/munge/seed"],
            check=True, env=env, timeout=30,
        )  # fmt: skip
        if dbd_port is not None:
            _start_accounting(folder, host, dbd_port, env)
        subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, timeout=30)
        subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env, timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env, timeout=30)
            if state.stdout.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the SLURM node never became idle: {state.stdout} {state.stderr}")
        yield {"SLURM_CONF": str(conf)}
    finally:
        _stop(env, pids)


def _stop(env: dict[str, str], pid_files: list[Path]) -> None:
    """Cancel every job, wait for the queue to drain, then end the daemons (SIGTERM, then SIGKILL)."""
    import psutil

    subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True, timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True, timeout=30)
        if queue.returncode != 0 or not queue.stdout.strip():
            break
        time.sleep(0.2)
    daemons = []
    for pid_file in reversed(pid_files):
        try:
            daemons.append(psutil.Process(int(pid_file.read_text().strip())))
        except (OSError, ValueError, psutil.Error):
            continue
    daemons += [p for p in psutil.process_iter(["name"]) if p.info["name"] == "slurmstepd" and _ours(p, env)]
    for process in daemons:
        try:
            process.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(daemons, timeout=10)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            continue


def _ours(process: Any, env: dict[str, str]) -> bool:
    """Whether a job step belongs to this cluster (slurmd passes on its SLURM_CONF), not to another one here."""
    try:
        return bool(process.environ().get("SLURM_CONF") == env["SLURM_CONF"])
    except Exception:
        return False
