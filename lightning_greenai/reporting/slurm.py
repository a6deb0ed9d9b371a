"""SLURM's own energy record of a sweep's trials, beside ours.

A trial that ran as a SLURM job records its job id (``<array job>_<task>`` for an array task) in the ledger.
SLURM keeps an energy figure per job (``ConsumedEnergyRaw``, joules, from ``sacct``) only where an energy plugin is
configured (``AcctGatherEnergyType``, e.g. ``acct_gather_energy/rapl`` or ``gpu``) and job accounting is on. We put
it beside our figure and flag a trial where the two differ by more than :data:`TOLERANCE`; where SLURM has none, the
report says so, and why when ``sacct`` says.

SLURM's figure covers what its plugin reads (often the whole node's RAPL counters, all jobs on it), ours the trial's
own devices: on a shared node the two differ for a reason, which the report cannot tell from a fault.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightning_greenai.spend import Spend
from lightning_greenai.units import format_energy

__all__ = ["TOLERANCE", "SlurmEnergy", "parse_sacct", "slurm_energy"]

#: Relative difference above which SLURM's figure and ours are called in disagreement.
TOLERANCE = 0.05


@dataclass(frozen=True)
class SlurmEnergy:
    """SLURM's energy figures for the SLURM jobs a sweep's trials ran as, and ours for the same jobs.

    Keyed by SLURM job: trials that ran inside one job (a sweeper itself run under ``sbatch`` with a local
    launcher) share its figure, so ours is their sum.
    """

    trials: dict[str, list[int]]  # SLURM job -> the trials it ran
    slurm_j: dict[str, float]  # SLURM job -> its ConsumedEnergyRaw, where SLURM has one
    ours_j: dict[str, float]  # SLURM job -> our energy of its trials
    reason: str | None  # why SLURM gave no figures, when it gave none

    @property
    def disagreements(self) -> dict[str, float]:
        """Jobs whose two figures differ by more than :data:`TOLERANCE`, with the relative difference."""
        out = {}
        for job, theirs in self.slurm_j.items():
            ours = self.ours_j.get(job, 0.0)
            base = max(abs(ours), abs(theirs), 1e-12)
            if abs(theirs - ours) / base > TOLERANCE:
                out[job] = (theirs - ours) / base
        return out

    def lines(self) -> list[str]:
        """The report's lines."""
        count = sum(len(t) for t in self.trials.values())
        head = f"SLURM: {count} trial{'s' if count != 1 else ''} ran as {len(self.trials)} SLURM job(s)"
        if not self.slurm_j:
            return [f"{head}; SLURM reported no energy for them ({self.reason or 'no ConsumedEnergy recorded'})"]
        slurm_total, ours_total = sum(self.slurm_j.values()), sum(self.ours_j[j] for j in self.slurm_j)
        largest = max(slurm_total, ours_total)
        theirs, ours = format_energy(slurm_total, unit_for=largest), format_energy(ours_total, unit_for=largest)
        text = f"{head}; SLURM's energy for {len(self.slurm_j)}: {theirs} against our {ours}"
        bad = self.disagreements
        if bad:
            worst = ", ".join(f"{job} {100 * d:+.0f} %" for job, d in sorted(bad.items())[:5])
            text += f"; they differ by more than {100 * TOLERANCE:g} % for {len(bad)} ({worst})"
        else:
            text += f"; within {100 * TOLERANCE:g} % for each"
        return [text]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "trials": self.trials,
            "slurm_energy_j": self.slurm_j,
            "our_energy_j": self.ours_j,
            "disagreements": self.disagreements,
            "tolerance": TOLERANCE,
            "reason": self.reason,
        }


def parse_sacct(text: str) -> dict[str, float]:
    """``sacct -n -P -X -o JobID,ConsumedEnergyRaw`` output: job id -> joules (jobs with no figure left out)."""
    out = {}
    for line in text.splitlines():
        job, _, energy = line.strip().partition("|")
        try:
            value = float(energy)
        except ValueError:
            continue
        if job and value > 0:
            out[job] = value
    return out


def slurm_energy(trials: Sequence[Mapping[str, Any]], *, timeout_s: float = 10.0) -> SlurmEnergy | None:
    """SLURM's figures for the finished ``trials`` (ledger events) that ran as SLURM jobs; ``None`` if none did."""
    runs: dict[str, list[int]] = {}
    ours: dict[str, float] = {}
    for t in trials:
        job = t.get("slurm_job")
        if not isinstance(job, str) or not job:
            continue
        runs.setdefault(job, []).append(int(t["job"]))
        try:
            energy_j = Spend.from_dict(t.get("spend", {})).total_energy_j or 0.0
        except ValueError:
            energy_j = 0.0
        ours[job] = ours.get(job, 0.0) + energy_j
    if not runs:
        return None
    if shutil.which("sacct") is None:
        return SlurmEnergy(runs, {}, ours, "sacct is not on this machine's PATH")
    command = ["sacct", "-n", "-P", "-X", "-o", "JobID,ConsumedEnergyRaw", "-j", ",".join(runs)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as err:
        return SlurmEnergy(runs, {}, ours, f"sacct failed: {err}")
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return SlurmEnergy(runs, {}, ours, f"sacct: {why}")
    figures = parse_sacct(done.stdout)
    slurm_j = {job: figures[job] for job in runs if job in figures}
    reason = None if slurm_j else "sacct has no ConsumedEnergy: no AcctGatherEnergyType plugin is configured"
    return SlurmEnergy(runs, slurm_j, ours, reason)
