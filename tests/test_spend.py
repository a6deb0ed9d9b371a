from lightning_greenai import Method, Spend


def test_spend_addition_sums_and_keeps_the_worst_method():
    a = Spend(
        energy_j={"gpu:0": 10.0},
        methods={"gpu:0": Method.COUNTER},
        flops=5,
        duration_s=2,
        gpu_s=2,
        stage_energy_j={"train": 10.0},
    )
    b = Spend(
        energy_j={"gpu:0": 5.0, "cpu:estimate": 1.0},
        methods={"gpu:0": Method.SAMPLED, "cpu:estimate": Method.ESTIMATE},
        flops=1,
        duration_s=1,
        gpu_s=1,
        is_estimate=True,
        stage_energy_j={"validate": 6.0},
    )
    c = a + b
    assert c.energy_j == {"gpu:0": 15.0, "cpu:estimate": 1.0}
    assert c.methods == {"gpu:0": Method.SAMPLED, "cpu:estimate": Method.ESTIMATE}
    assert (c.flops, c.duration_s, c.gpu_s, c.is_estimate) == (6, 3, 3, True)
    assert c.stage_energy_j == {"train": 10.0, "validate": 6.0}
    assert c.total_energy_j == 16.0


def test_spend_unavailable_energy_is_none_not_zero():
    s = Spend(methods={"gpu:0": Method.UNAVAILABLE})
    assert s.total_energy_j is None
    assert s.energy_kwh is None
    assert s.unavailable_domains == ["gpu:0"]


def test_spend_round_trips_through_dict():
    s = Spend(
        energy_j={"dram:0": 7.5},
        methods={"dram:0": Method.COUNTER, "gpu:1": Method.UNAVAILABLE},
        flops=3e12,
        duration_s=4.0,
        gpu_s=0.0,
        is_estimate=False,
        stage_energy_j={"train": 7.5},
    )
    assert Spend.from_dict(s.to_dict()) == s


def test_spend_units_and_power():
    s = Spend(energy_j={"gpu:0": 7.2e6}, methods={"gpu:0": Method.COUNTER}, duration_s=7200.0, gpu_s=7200.0)
    assert s.energy_kwh == 2.0
    assert s.gpu_hours == 2.0
    assert s.wall_hours == 2.0
    assert s.power_w == 1000.0
    assert s.scaled(0.5).energy_kwh == 1.0
