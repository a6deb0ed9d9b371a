"""Combine the spends of several processes (DDP ranks, nodes) so that no physical counter is counted twice.

Each process summarises its :class:`~lightning_greenai.Meter` as a plain record keyed by counter uid (GPU UUID,
host + RAPL zone path) with its rank, node rank and host. :func:`merge_records` keeps one reading per uid (the
largest, when two ranks read the same GPU) and sums across distinct uids; :func:`gather_spend` does the all-gather
when ``torch.distributed`` runs. A run on several nodes also says which node each counter is on (``nodes``), so a
price tag can show the energy of each node.
"""

from __future__ import annotations

import atexit
import signal
import socket
from collections.abc import Sequence
from typing import Any

from lightning_greenai.metering.meter import Meter
from lightning_greenai.spend import Method, Spend

__all__ = ["gather_records", "gather_spend", "local_record", "merge_records", "node_label", "refresh_own"]


def local_record(meter: Meter, *, rank: int = 0, node: int = 0) -> dict[str, Any]:
    """Summarise ``meter`` as a picklable record for :func:`merge_records` (``node``: the node rank)."""
    spend = meter.spend
    uids = meter.domain_uids()
    stages = meter.stage_energy_by_domain()
    domains = {
        uids[name]: {
            "name": name,
            "energy_j": energy_j,
            "bounds_j": list(spend.bounds_of(name)),
            "method": spend.methods[name].value,
            "by_stage": stages.get(name, {}),
        }
        for name, energy_j in spend.energy_j.items()
    }
    return {
        "host": socket.gethostname(),
        "rank": rank,
        "node": node,
        "duration_s": spend.duration_s,
        "flops": spend.flops,
        "hourly_energy_j": dict(spend.hourly_energy_j),
        "host_share_s": spend.host_share_s,
        "domains": domains,
        "unavailable": spend.unavailable_domains,
    }


def node_label(record: dict[str, Any]) -> str:
    """How a price tag names the node a record comes from: its node rank and host."""
    return f"node {record.get('node', 0)} ({record['host']})"


def merge_records(
    records: Sequence[dict[str, Any]], uids: dict[str, str] | None = None, nodes: dict[str, str] | None = None
) -> Spend:
    """Merge per-process records into one spend: each counter once, FLOPs summed, the longest duration.

    ``uids``, when given, receives the physical counter behind each domain name of the result; ``nodes``, when the
    records come from more than one node, the node (:func:`node_label`) of each domain name.
    """
    best: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for record in records:
        for uid, domain in record["domains"].items():
            if uid not in best or domain["energy_j"] > best[uid][1]["energy_j"]:
                best[uid] = (record, domain)
    names: dict[str, list[str]] = {}
    for uid, (_, domain) in best.items():
        names.setdefault(domain["name"], []).append(uid)
    energy: dict[str, float] = {}
    bounds: dict[str, tuple[float, float]] = {}
    methods: dict[str, Method] = {}
    stages: dict[str, float] = {}
    gpu_s = 0.0
    many_nodes = len({node_label(r) for r in records}) > 1
    for uid, (record, domain) in best.items():
        name = domain["name"]
        if len(names[name]) > 1:  # the same display name on several hosts, nodes or ranks
            hosts = {best[u][0]["host"] for u in names[name]}
            node_ranks = {best[u][0].get("node", 0) for u in names[name]}
            if len(hosts) > 1:
                name = f"{name}@{record['host']}"
            elif len(node_ranks) > 1:  # nodes sharing a host name: simulated, or containers
                name = f"{name}@node{record.get('node', 0)}"
            else:
                name = f"{name}@rank{record['rank']}"
        energy[name] = float(domain["energy_j"])
        low, high = domain.get("bounds_j", (energy[name], energy[name]))
        bounds[name] = (float(low), float(high))
        if nodes is not None and many_nodes:
            nodes[name] = node_label(record)
        methods[name] = Method(domain["method"])
        if uids is not None:
            uids[name] = uid
        for stage, value in domain["by_stage"].items():
            stages[stage] = stages.get(stage, 0.0) + float(value)
        if domain["name"].startswith("gpu:"):
            gpu_s += float(record["duration_s"])
    # each process's hours give the shape (a counter two ranks read is in both): spread the total in its proportions
    hourly: dict[str, float] = {}
    for record in records:
        for hour, joules in record.get("hourly_energy_j", {}).items():
            hourly[hour] = hourly.get(hour, 0.0) + float(joules)
    seen_j, total_j = sum(hourly.values()), sum(energy.values())
    hourly = {h: j * total_j / seen_j for h, j in hourly.items()} if seen_j > 0 else {}
    for record in records:
        for name in record["unavailable"]:
            methods.setdefault(name if len(records) == 1 else f"{name}@rank{record['rank']}", Method.UNAVAILABLE)
    return Spend(
        energy_j=energy,
        methods=methods,
        flops=sum(float(r["flops"]) for r in records),
        duration_s=max((float(r["duration_s"]) for r in records), default=0.0),
        gpu_s=gpu_s,
        is_estimate=any(m.is_estimate for m in methods.values()),
        stage_energy_j=stages,
        energy_bounds_j=bounds,
        hourly_energy_j=hourly,
        host_share_s=sum(float(r.get("host_share_s", 0.0)) for r in records),  # one rank per node meters it
    )


def gather_records(meter: Meter, *, node: int = 0) -> list[dict[str, Any]]:
    """Return every process's record of its meter (rank order); ``node``: this process's node rank.

    Under ``torch.distributed`` this is an all-gather, so every rank must call it at the same point.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [local_record(meter, node=node)]
    records: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(records, local_record(meter, rank=dist.get_rank(), node=node))
    _destroy_group_at_exit()
    return records


_destroy_registered = False


def _destroy_group_at_exit() -> None:
    """Destroy the default process group before the interpreter finalizes (registered once per process).

    PyTorch leaves that to the user (pytorch#190489), and Lightning does it for NCCL only. A gloo rank that exits
    through ``sys.exit`` (every ``ddp_spawn`` rank) with its group alive can then abort in gloo's threads
    ("terminate called without an active exception", SIGABRT), failing a run that finished.
    """
    global _destroy_registered
    if not _destroy_registered:
        _destroy_registered = True
        atexit.register(_destroy_group)


def _destroy_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C must not cut the teardown short
        try:
            dist.destroy_process_group()
        finally:
            signal.signal(signal.SIGINT, previous)


def refresh_own(records: Sequence[dict[str, Any]], meter: Meter, *, node: int = 0) -> list[dict[str, Any]]:
    """Replace this process's record in an earlier gather by a fresh one: no collective, other ranks as last seen."""
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    fresh = local_record(meter, rank=rank, node=node)
    if not records:
        return [fresh]
    return [fresh if r["rank"] == rank else r for r in records]


def gather_spend(meter: Meter, uids: dict[str, str] | None = None) -> Spend:
    """Return the spend of every process, each counter once (``uids``: see :func:`merge_records`).

    Under ``torch.distributed`` this is an all-gather, so every rank must call it at the same point.
    """
    return merge_records(gather_records(meter), uids)
