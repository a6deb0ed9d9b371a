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


def test_the_field_lists_are_declared_once_and_cover_every_field():
    import dataclasses

    from lightning_greenai.spend import AMOUNT_FIELDS, JOULE_MAP_FIELDS, SPEND_FIELDS

    assert tuple(f.name for f in dataclasses.fields(Spend)) == SPEND_FIELDS
    assert AMOUNT_FIELDS == ("flops", "duration_s", "gpu_s", "host_share_s")
    assert JOULE_MAP_FIELDS == ("energy_j", "stage_energy_j", "hourly_energy_j")
    assert tuple(Spend().to_dict()) == SPEND_FIELDS
    # every amount and every map of joules adds, subtracts and scales: none is left out of the arithmetic
    one = Spend(**dict.fromkeys(AMOUNT_FIELDS, 2.0), **{f: {"k": 2.0} for f in JOULE_MAP_FIELDS})
    assert all(getattr(one + one, f) == 4.0 for f in AMOUNT_FIELDS)
    assert all(getattr(one.scaled(0.5), f) == {"k": 1.0} for f in JOULE_MAP_FIELDS)
    assert all(getattr((one + one).since(one), f) == 2.0 for f in AMOUNT_FIELDS)
    assert Spend.from_dict(one.to_dict()) == one


def test_of_two_damaged_fields_the_first_is_named():
    import pytest

    with pytest.raises(ValueError, match="flops must be a finite number"):
        Spend.from_dict({"flops": -1, "stage_energy_j": {"train": -1}, "host_share_s": -1})
