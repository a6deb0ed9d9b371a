"""SLURM's own energy figure beside ours: parsed from sacct's output, compared job by job."""

from lightning_greenai.reporting.slurm import TOLERANCE, SlurmEnergy, parse_sacct, slurm_energy


def test_sacct_output_is_parsed_and_jobs_without_a_figure_are_left_out():
    # what `sacct -n -P -X -o JobID,ConsumedEnergyRaw -j 12_0,12_1,13` prints with an energy plugin configured
    text = "12_0|5400\n12_1|\n13|0\n14|not a number\n"
    assert parse_sacct(text) == {"12_0": 5400.0}


def test_figures_within_five_percent_agree_and_others_are_named():
    figures = SlurmEnergy(
        trials={"12_0": [0], "12_1": [1], "13": [2, 3]},
        slurm_j={"12_0": 103.0, "12_1": 150.0},
        ours_j={"12_0": 100.0, "12_1": 100.0, "13": 40.0},
        reason=None,
    )
    assert TOLERANCE == 0.05
    assert set(figures.disagreements) == {"12_1"}  # 3 % apart agree; 50 % apart do not
    (line,) = figures.lines()
    assert line.startswith("SLURM: 4 trials ran as 3 SLURM job(s); SLURM's energy for 2: 253 J against our 200 J")
    assert "differ by more than 5 % for 1 (12_1 +33 %)" in line


def test_trials_outside_slurm_give_nothing_and_damaged_spends_count_zero():
    assert slurm_energy([{"job": 0, "spend": {"energy_j": {"gpu:0": 1.0}}}]) is None
    figures = slurm_energy([{"job": 0, "slurm_job": "7", "spend": {"energy_j": {"gpu:0": -1}}}])
    assert figures is not None and figures.ours_j == {"7": 0.0} and not figures.slurm_j
    assert "SLURM reported no energy" in figures.lines()[0]
