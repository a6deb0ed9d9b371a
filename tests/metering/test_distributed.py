from lightning_greenai import Method
from lightning_greenai.metering.distributed import merge_records


def record(rank, host, domains, duration=10.0, flops=0.0, unavailable=()):
    return {
        "rank": rank,
        "host": host,
        "duration_s": duration,
        "flops": flops,
        "domains": {
            uid: {"name": name, "energy_j": e, "method": "counter", "by_stage": {"train": e}}
            for uid, (name, e) in domains.items()
        },
        "unavailable": list(unavailable),
    }


def test_each_rank_gpu_summed_host_cpu_once():
    spend = merge_records(
        [
            record(0, "n0", {"GPU-a": ("gpu:0", 100.0), "rapl:n0:/pkg0": ("cpu:package-0", 30.0)}, flops=5),
            record(1, "n0", {"GPU-b": ("gpu:1", 120.0)}, flops=7, duration=11.0),
        ]
    )
    assert spend.energy_j == {"gpu:0": 100.0, "cpu:package-0": 30.0, "gpu:1": 120.0}
    assert spend.flops == 12
    assert spend.duration_s == 11.0
    assert spend.gpu_s == 21.0
    assert spend.stage_energy_j == {"train": 250.0}


def test_two_ranks_on_one_gpu_count_it_once():
    spend = merge_records(
        [
            record(0, "n0", {"GPU-a": ("gpu:0", 100.0)}),
            record(1, "n0", {"GPU-a": ("gpu:0", 98.0)}),
        ]
    )
    assert spend.energy_j == {"gpu:0": 100.0}


def test_same_device_names_on_two_nodes_stay_apart():
    spend = merge_records(
        [
            record(0, "n0", {"GPU-a": ("gpu:0", 1.0), "rapl:n0:/p": ("cpu:package-0", 2.0)}),
            record(1, "n1", {"GPU-b": ("gpu:0", 3.0), "rapl:n1:/p": ("cpu:package-0", 4.0)}),
        ]
    )
    assert spend.energy_j == {"gpu:0@n0": 1.0, "cpu:package-0@n0": 2.0, "gpu:0@n1": 3.0, "cpu:package-0@n1": 4.0}
    assert spend.total_energy_j == 10.0


def test_unavailable_domains_are_kept_per_rank():
    spend = merge_records([record(0, "n0", {}, unavailable=["gpu:0"]), record(1, "n0", {}, unavailable=["gpu:1"])])
    assert spend.methods == {"gpu:0@rank0": Method.UNAVAILABLE, "gpu:1@rank1": Method.UNAVAILABLE}
    assert spend.total_energy_j is None


def test_the_node_of_each_counter_on_two_hosts_and_on_two_nodes_of_one_host():
    nodes: dict[str, str] = {}
    two_hosts = [
        {**record(0, "n0", {"GPU-a": ("gpu:0", 1.0), "rapl:n0:/p": ("cpu:package-0", 2.0)}), "node": 0},
        {**record(1, "n1", {"GPU-b": ("gpu:0", 3.0), "rapl:n1:/p": ("cpu:package-0", 4.0)}), "node": 1},
    ]
    merge_records(two_hosts, nodes=nodes)
    assert nodes == {
        "gpu:0@n0": "node 0 (n0)",
        "cpu:package-0@n0": "node 0 (n0)",
        "gpu:0@n1": "node 1 (n1)",
        "cpu:package-0@n1": "node 1 (n1)",
    }
    nodes.clear()
    one_host = [
        {**record(0, "h", {"GPU-a": ("gpu:0", 1.0), "rapl:h:/node0/p": ("cpu:package-0", 2.0)}), "node": 0},
        {**record(1, "h", {"GPU-b": ("gpu:1", 3.0)}), "node": 0},
        {**record(2, "h", {"GPU-c": ("gpu:0", 5.0), "rapl:h:/node1/p": ("cpu:package-0", 6.0)}), "node": 1},
    ]
    spend = merge_records(one_host, nodes=nodes)
    assert spend.energy_j == {"gpu:0@node0": 1.0, "cpu:package-0@node0": 2.0, "gpu:1": 3.0, "gpu:0@node1": 5.0,
                              "cpu:package-0@node1": 6.0}  # fmt: skip
    assert nodes["gpu:1"] == "node 0 (h)" and nodes["cpu:package-0@node1"] == "node 1 (h)"
    nodes.clear()
    merge_records(one_host[:2], nodes=nodes)
    assert nodes == {}  # one node: no per-node lines
