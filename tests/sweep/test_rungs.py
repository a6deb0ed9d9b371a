"""The rungs of ASHA and Hyperband as pure decisions: cut-offs, reasons, brackets, and their replay from the ledger."""

import numpy as np
import pytest

from lightning_greenai.sweep.rungs import RungOptions, SuccessiveHalving, quantile


def asha(direction="max", **options) -> SuccessiveHalving:
    return SuccessiveHalving(RungOptions(**options), direction=direction)


@pytest.mark.parametrize("values", [[0.3], [0.1, 0.9], [0.5, 0.2, 0.8, 0.4], [3.0, 1.0, 2.0, 5.0, 4.0, 0.0, 7.0]])
@pytest.mark.parametrize("q", [0.0, 1 / 3, 0.5, 2 / 3, 1.0])
def test_the_cutoff_is_numpys_linear_quantile(values, q):
    assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_rung_1_prunes_a_score_outside_the_top_third_of_the_earlier_ones_and_says_why():
    rungs = asha(max_resource=9)
    first = rungs.report(0, 1, 0.63)
    assert (first.stop, first.decision, first.rung, first.next_rung) == (False, "promoted", 1, 3.0)
    assert first.reason == "rung 1 (1 epoch): 0.63, the first score at this rung, goes on"
    second = rungs.report(1, 1, 0.41)
    assert (second.stop, second.decision, second.next_rung) == (True, "pruned", None)
    assert second.reason == "rung 1 (1 epoch): 0.41 < top third 0.63 of 1 earlier score"
    third = rungs.report(2, 1, 0.7)  # cut-off: the 2/3 quantile of [0.63, 0.41] = 0.5567
    assert not third.stop and third.reason == "rung 1 (1 epoch): 0.7 >= top third 0.5567 of 2 earlier scores"


def test_a_report_between_rungs_decides_nothing_and_points_at_the_next_rung():
    rungs = asha(max_resource=9)
    assert rungs.first_rung(0) == 1.0
    assert rungs.report(0, 1, 0.5).next_rung == 3.0
    between = rungs.report(0, 2, 0.6)
    assert (between.stop, between.decision, between.next_rung) == (False, None, 3.0)
    top = rungs.report(0, 3, 0.7)
    assert (top.decision, top.rung, top.next_rung) == ("promoted", 2, None)  # 9 is the end: no rung there
    assert rungs.report(0, 9, 0.9).decision is None


def test_lower_is_better_when_the_direction_is_min():
    rungs = asha("min", max_resource=9, reduction_factor=2)
    rungs.report(0, 1, 0.2)
    verdict = rungs.report(1, 1, 0.5)
    assert (
        verdict.stop and verdict.reason == "rung 1 (1 epoch): 0.5 > top half (lower is better) 0.2 of 1 earlier score"
    )


def test_without_a_max_the_first_report_places_the_rungs_and_none_leaves_them_open():
    rungs = asha()
    assert rungs.first_rung(0) == 1.0
    rungs.report(0, 1, 0.5, max_resource=4)
    assert (rungs.max_resource, rungs.rungs) == (4, 2)  # rungs at 1 and 3
    open_ended = asha(resource="steps")
    open_ended.report(0, 1, 0.5)
    assert open_ended.rungs is None and open_ended.report(0, 81, 0.6).reason.startswith("rung 5 (81 steps)")


def test_hyperband_draws_each_trials_bracket_from_the_seed_and_the_job():
    def brackets(seed):
        ladder = SuccessiveHalving(RungOptions(max_resource=27), direction="max", hyperband=True, seed=seed)
        return [ladder.bracket_of(job) for job in range(400)]

    drawn = brackets(0)
    assert drawn == brackets(0) and drawn != brackets(1)
    # Syne Tune's weights for rungs 1, 3, 9 below 27: 4/(4*1), 4/(3*3), 4/(2*9), 4/(1*27) -> 0.55, 0.25, 0.12, 0.08
    shares = [drawn.count(b) / len(drawn) for b in range(4)]
    assert shares == pytest.approx([0.55, 0.25, 0.12, 0.08], abs=0.06)


def test_a_hyperband_bracket_decides_from_its_own_first_rung_with_its_own_scores():
    ladder = SuccessiveHalving(RungOptions(max_resource=9), direction="max", hyperband=True)
    ladder.brackets.update({0: 1, 1: 1, 2: 2, 3: 0})
    assert [ladder.first_rung(j) for j in range(4)] == [3.0, 3.0, None, 1.0]
    assert ladder.report(0, 1, 0.9).decision is None  # bracket 1 has no rung 1
    assert ladder.report(0, 3, 0.9).reason == "bracket 1, rung 2 (3 epochs): 0.9, the first score at this rung, goes on"
    assert ladder.report(1, 3, 0.1).stop
    assert ladder.report(2, 3, 0.0).decision is None  # the last bracket runs to the end
    assert not ladder.report(3, 1, 0.0).stop  # bracket 0's rung 1 holds no score yet


def test_hyperband_without_a_max_says_what_to_set():
    ladder = SuccessiveHalving(RungOptions(), direction="max", hyperband=True)
    ladder.report(0, 1, 0.5)
    assert ladder.problem is not None and "set hydra.sweeper.hyperband.max_resource" in ladder.problem


def test_replaying_the_rung_events_gives_the_same_decisions():
    scores = [0.5, 0.2, 0.9, 0.4, 0.6, 0.1, 0.8]
    whole = asha(max_resource=9)
    verdicts = [whole.report(job, 1, s) for job, s in enumerate(scores)]
    events = [v.event(job, s, 9.0) | {"event": "rung"} for job, (v, s) in enumerate(zip(verdicts, scores, strict=True))]
    resumed = asha()  # no max configured: the events hold the one the first session fixed
    for event in events[:4]:
        resumed.replay(event)
    again = [resumed.report(job, 1, s) for job, s in enumerate(scores) if job >= 4]
    assert [(v.stop, v.reason) for v in again] == [(v.stop, v.reason) for v in verdicts[4:]]
    resumed.forget(2)  # an interrupted job's scores leave the rung: it reports anew under its new number
    assert 2 not in resumed.recorded[(0, 0)]
