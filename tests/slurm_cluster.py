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

from tests.services import apt_install, free_port

DAEMONS = ("slurmctld", "slurmd", "munged", "sinfo", "squeue", "scancel", "sbatch")


def ensure_installed() -> str | None:
    """Install SLURM and munge with apt if missing; the reason it cannot, or ``None`` when they are there."""
    return apt_install(["slurm-wlm", "munge"], lambda: all(shutil.which(name) for name in DAEMONS))


def _config(folder: Path, host: str) -> str:
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
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=300
KillWait=2
InactiveLimit=0
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


@contextmanager
def slurm_cluster(folder: Path) -> Iterator[dict[str, str]]:
    """Start a cluster in ``folder``; yield the environment that reaches it (``SLURM_CONF``); stop it after."""
    for sub in ("state", "spool", "log", "munge"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder, socket.gethostname()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pids = [folder / "munge" / "munged.pid", folder / "slurmctld.pid", folder / "slurmd.pid"]
    try:
        subprocess.run(
            ["munged", "--force", f"--socket={folder}/munge/munge.socket.2", f"--pid-file={pids[0]}",
             f"--log-file={folder}/munge/munged.log", f"--seed-file={folder}/munge/seed"],
            check=True, env=env, timeout=30,
        )  # fmt: skip
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
