import csv
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, LauncherTestSuite

from hydra_plugins.greenai_sweeper.greenai_sweeper import GreenAISweeper
from lightning_greenai import Spend
from lightning_greenai.sweep.ledger import Ledger

TASK = Path(__file__).with_name("meter_task.py")
ROOT = Path(__file__).parents[2]


def test_discovery():
    assert GreenAISweeper.__name__ in [p.__name__ for p in Plugins.instance().discover(Sweeper)]


@pytest.mark.parametrize(("launcher_name", "overrides"), [("basic", ["hydra/sweeper=greenai"])])
class TestGreenAISweeperAsLauncher(LauncherTestSuite):
    """Hydra's own launcher suite, with an unlimited budget (the sweeper is then a grid sweeper)."""


@pytest.mark.parametrize(
    ("launcher_name", "overrides"), [("basic", ["hydra/sweeper=greenai", "hydra.sweeper.max_batch_size=2"])]
)
class TestGreenAISweeperBatched(BatchedSweeperTestSuite):
    """Hydra's batched-sweeper suite: max_batch_size=2 gives 3 batches of 2."""


def run(sweep_dir: Path, *overrides: str, check: bool = True, task: Path = TASK) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [sys.executable, str(task), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=sweep_dir.parent,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    if (sweep_dir / "budget_report.json").exists():
        assert_books_balance(sweep_dir, proc.stdout)
    return proc


def report(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "budget_report.json").read_text())


def finished(sweep_dir: Path) -> dict[int, dict]:
    return {e["job"]: e for e in Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events() if e["event"] == "finished"}


def assert_books_balance(sweep_dir: Path, printed: str | None = None) -> dict:
    """ledger = budget_report.json = printed: the invariant every sweep keeps, whatever stopped or damaged it."""
    ledger = sum((Spend.from_dict(e["spend"]) for e in finished(sweep_dir).values()), Spend())
    rep = report(sweep_dir)
    assert rep["spend"]["energy_j"] == pytest.approx(ledger.energy_j)
    assert rep["spend"]["flops"] == pytest.approx(ledger.flops)
    assert rep["trials"] == len(finished(sweep_dir))
    tag_file = sweep_dir / "price_tag.json"  # the full tag the printed one points to
    if tag_file.exists():
        assert json.loads(tag_file.read_text())["spend"]["energy_j"] == pytest.approx(ledger.energy_j)
    if printed is not None and ledger.total_energy_j and "price tag (sweep)" in printed:
        tag = printed[printed.rindex("price tag (sweep)") :]  # the compact tag (hydra.sweeper.verbose=false)
        shown = re.search(r"^  energy\s+([0-9.]+(?:e[-+][0-9]+)?) (J|Wh|kWh)", tag, re.MULTILINE)
        assert shown is not None, tag[-2000:]
        joules = float(shown.group(1)) * {"J": 1.0, "Wh": 3600.0, "kWh": 3.6e6}[shown.group(2)]
        assert joules == pytest.approx(ledger.total_energy_j, rel=0.005)  # printed to 3 significant figures
        trials = re.search(r"^  sweep:?\s+\w+ search(?: \(cost-aware: [^)]*\))?, (\d+) trials? \(", tag, re.MULTILINE)
        assert trials is not None and int(trials.group(1)) == rep["trials"], tag[-2000:]
    return rep


GRID = "x=0,1,2,3,4,5,6,7,8,9"
TEN_J = ("hydra.sweeper.budget.energy_kwh=10 J", "hydra.sweeper.prior_cost.energy_kwh=3 J")


@pytest.mark.parametrize("verbose", [False, True])
def test_the_sweep_prints_a_compact_tag_or_with_verbose_the_full_table(tmp_path, verbose):
    sweep_dir = tmp_path / "sweep"
    proc = run(sweep_dir, GRID, *TEN_J, f"hydra.sweeper.verbose={str(verbose).lower()}")  # books balance: both parse
    tag = proc.stdout[proc.stdout.index("lightning-greenai price tag (sweep)") : proc.stdout.index("[greenai] plots")]
    if verbose:  # as `greenai report <sweep dir>` prints it
        assert "  device          method         energy" in tag and "  sweep: grid search, 3 trials" in tag
    else:
        assert len(tag.splitlines()) <= 10 and "  sweep     grid search, 3 trials (completed 3); best " in tag
        assert f"  full tag: {sweep_dir / 'price_tag.json'} (or: greenai report {sweep_dir})" in tag


@pytest.mark.parametrize(
    "launcher",
    [
        pytest.param(["hydra.sweeper.max_batch_size=2"], id="basic"),
        pytest.param(
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.max_batch_size=2"], id="joblib"
        ),
        pytest.param(
            ["hydra/launcher=submitit_local", "hydra.sweeper.max_batch_size=2", "hydra.launcher.timeout_min=5"],
            id="submitit_local",
        ),
    ],
)
def test_deterministic_costs_give_exactly_floor_budget_over_cost_trials(tmp_path, launcher):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, GRID, *TEN_J, *launcher)
    rep = report(sweep_dir)
    assert rep["trials_by_status"] == {"completed": 3}  # floor(10 J / 3 J)
    assert rep["spend"]["energy_j"] == {"gpu:0": pytest.approx(9.0)}
    assert "not even one fits" in rep["stop_reason"]
    assert rep["best"]["overrides"] == ["x=2"]
    ledger = Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events()
    assert [e["event"] for e in ledger].count("finished") == 3
    heartbeats = [p.name for p in (sweep_dir / ".greenai" / "trials").glob("*.json") if "allowance" not in p.name]
    assert sorted(heartbeats) == ["0.json", "1.json", "2.json"]
    curve = (sweep_dir / "budget_curve.csv").read_text().splitlines()
    assert curve[0].startswith("job,status,score,best_so_far,energy_kwh")
    assert len(curve) == 4


def test_a_co2e_budget_prices_each_hour_at_the_intensity_timeline(tmp_path):
    # 3,000 g/kWh in every hour around now: 3 J trials cost 2.5 mg each, so an 8.5 mg budget holds 3 of them; at
    # Germany's yearly figure they would cost 0.3 mg each and all ten would run
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    rows = [f"{(now + timedelta(hours=h)).isoformat()},3000" for h in range(-2, 4)]
    (tmp_path / "intensity.csv").write_text("datetime,carbon_intensity_g_per_kwh\n" + "\n".join(rows) + "\n")
    sweep_dir = tmp_path / "sweep"
    run(
        sweep_dir,
        GRID,
        "hydra.sweeper.budget.co2e_kg=8.5 mgCO2e",
        "hydra.sweeper.prior_cost.energy_kwh=3 J",
        "hydra.sweeper.grid.country=DE",
        f"hydra.sweeper.grid.intensity_csv={tmp_path / 'intensity.csv'}",
    )
    rep = report(sweep_dir)
    assert rep["trials_by_status"] == {"completed": 3}
    assert rep["spend"]["energy_j"] == {"gpu:0": pytest.approx(9.0)}
    assert sum(rep["spend"]["hourly_energy_j"].values()) == pytest.approx(9.0)


def test_flop_budget(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(
        sweep_dir,
        GRID,
        "flops_per_step=1000",
        "hydra.sweeper.budget.flops=10000",
        "hydra.sweeper.prior_cost.flops=3000",
    )
    rep = report(sweep_dir)
    assert rep["trials_by_status"] == {"completed": 3}
    assert rep["spend"]["flops"] == 9000


@pytest.mark.parametrize(
    "launcher",
    [
        pytest.param(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], id="joblib"),
        pytest.param(["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"], id="submitit_local"),
    ],
)
def test_a_killed_job_is_billed_at_its_last_heartbeat_and_siblings_are_kept(tmp_path, launcher):
    sweep_dir = tmp_path / "sweep"
    run(
        sweep_dir,
        "x=0,1,2,3",
        "steps=3",
        "crash_at=2",
        "crash_x=1",
        "hydra.sweeper.max_batch_size=4",
        "hydra.sweeper.max_failure_rate=1.0",
        "hydra.sweeper.budget.energy_kwh=1 kWh",
        *launcher,
    )
    finished = {
        e["job"]: e for e in Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events() if e["event"] == "finished"
    }
    assert finished[1]["status"] == "failed"
    assert finished[1]["spend"]["energy_j"]["gpu:0"] == pytest.approx(2.0)  # billed its two steps
    # its error says what the launcher raised for it: joblib's dead worker, submitit's job with no output
    assert finished[1]["error"].startswith("no JobReturn (the launcher raised "), finished[1]["error"]
    assert ("TerminatedWorkerError" if "joblib" in launcher[0] else "has not produced any output") in finished[1][
        "error"
    ]
    expected = {0: -9.0, 2: -1.0, 3: 0.0}
    for job in (0, 2, 3):
        if finished[job]["status"] == "completed":  # a sibling that ran keeps its result, JobReturn or not
            assert finished[job]["objective"] == expected[job]
            assert finished[job]["spend"]["energy_j"]["gpu:0"] == pytest.approx(3.0)
        elif "lost before it ran" in finished[job]["error"]:
            # joblib stops its pool when a worker dies: a job it never started is failed and costs nothing
            assert finished[job]["spend"]["energy_j"] == {}
        else:  # or one it had started, killed with the pool: billed at its last heartbeat
            assert "billed at its heartbeat" in finished[job]["error"]
            assert finished[job]["spend"]["energy_j"].get("gpu:0", 0.0) <= 3.0
    if "submitit" in launcher[0]:  # one process per job: every sibling finished
        assert [finished[j]["status"] for j in (0, 2, 3)] == ["completed"] * 3
    rep = report(sweep_dir)
    assert rep["spend"]["energy_j"]["gpu:0"] == pytest.approx(
        sum(e["spend"]["energy_j"].get("gpu:0", 0.0) for e in finished.values())
    )


def test_a_failed_trial_over_max_failure_rate_stops_with_a_clear_error_and_keeps_the_ledger(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(sweep_dir, "x=0,1", "fail=true", "hydra.sweeper.max_batch_size=1", check=False)
    assert proc.returncode != 0
    assert "[greenai] error: Budget sweep stopped: failure rate 1/1 over max_failure_rate=0.0" in proc.stderr
    assert "Traceback" not in proc.stderr  # the ledger and report are written: one line says why it ended
    assert "this trial was asked to fail" in proc.stderr
    assert report(sweep_dir)["trials_by_status"] == {"failed": 1}


def test_trials_that_fail_before_metering_stop_the_sweep_even_at_max_failure_rate_1(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        sweep_dir,
        "x=interval(0,6)",
        "blocks=0",  # no Meter block: each trial fails before metering anything
        "fail=true",
        "hydra.sweeper.strategy=random",
        "hydra.sweeper.max_trials=25",
        "hydra.sweeper.max_failure_rate=1.0",
        "hydra.sweeper.budget.energy_kwh=10 J",  # never spent: the trials spend nothing
        check=False,
    )
    assert proc.returncode == 1
    assert (
        "[greenai] error: Budget sweep stopped: 10 trials in a row failed without metering anything (no energy, "
        "FLOPs or time)" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert report(sweep_dir)["trials_by_status"] == {"failed": 10}  # not 25, and without max_trials: never ending


def test_an_objective_that_is_not_a_number_is_a_recorded_failure(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, "x=0,1", "bad_objective=true", "hydra.sweeper.max_failure_rate=1.0")
    finished = [e for e in Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events() if e["event"] == "finished"]
    assert {e["status"] for e in finished} == {"failed"}
    assert "must be float-castable" in finished[0]["error"]


def test_resume_after_a_crash_gives_the_same_trials_and_spend(tmp_path):
    common = (
        GRID,
        "hydra.sweeper.budget.energy_kwh=20 J",
        "hydra.sweeper.prior_cost.energy_kwh=3 J",
        "hydra.sweeper.max_batch_size=2",
    )
    whole = tmp_path / "whole"
    run(whole, *common)
    crashed = tmp_path / "crashed"
    # the first job of the third batch kills the sweeper itself (the basic launcher runs jobs in-process)
    proc = run(crashed, *common, "crash_at=0", "crash_x=4", f"crash_once_file={tmp_path / 'crashed.once'}", check=False)
    assert proc.returncode == 17
    assert not (crashed / "budget_report.json").exists()
    run(
        crashed,
        *common,
        "crash_at=0",
        "crash_x=4",
        f"crash_once_file={tmp_path / 'crashed.once'}",
        "hydra.sweeper.resume=true",
    )
    a, b = report(whole), report(crashed)
    assert a["trials_by_status"] == {"completed": 6}
    # the crash took the whole third batch (x=4 died, x=5 never ran): both are billed (0 J here) and run again
    assert b["trials_by_status"] == {"completed": 6, "interrupted": 2}
    assert b["spend"]["energy_j"] == a["spend"]["energy_j"]
    assert b["best"]["objective"] == a["best"]["objective"]
    launched = [e for e in Ledger(crashed / ".greenai" / "ledger.jsonl").events() if e["event"] == "launched"]
    assert [e["job"] for e in launched] == list(range(8))  # numbering continues after the crash
    assert [(e["overrides"][0], e["rerun_of"]) for e in launched[6:]] == [("x=4", 4), ("x=5", 5)]
    assert [e["overrides"][0] for e in launched if e.get("rerun_of") is None] == [f"x={i}" for i in range(6)]


def test_resume_refuses_a_changed_search_space_and_a_plain_rerun(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, "x=0,1", "hydra.sweeper.max_trials=1")
    proc = run(sweep_dir, "x=0,1", "hydra.sweeper.max_trials=1", check=False)
    assert "already holds a greenai sweep" in proc.stderr
    proc = run(sweep_dir, "x=0,1,2", "hydra.sweeper.max_trials=1", "hydra.sweeper.resume=true", check=False)
    assert "The search space changed" in proc.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hydra.sweeper.budget.energy_kwh=-1"], "`energy_kwh` must be >= 0, got -1"),
        (["hydra.sweeper.budget.energy_kwh=nan"], "finite number >= 0, got nan"),
        (["hydra.sweeper.budget.energy_kwh=3 parsecs"], "Unknown unit 'parsecs'"),
        (["+hydra.sweeper.budget.joules=3"], "joules"),
        (["hydra.sweeper.strategy=random"], "would never stop"),
        (["hydra.sweeper.strategy=annealing"], "Unknown strategy 'annealing'. Allowed: grid, random, optuna"),
        (["hydra.sweeper.stop_policy=pause"], "Unknown stop_policy 'pause'"),
        (["hydra.sweeper.budget.co2e_kg=1", "hydra.sweeper.grid.country=Germny"], "Did you mean: Germany"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path, overrides, message):
    proc = run(tmp_path / "sweep", "x=0,1", *overrides, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_random_and_optuna_strategies(tmp_path):
    rnd = tmp_path / "random"
    run(rnd, "x=interval(0,6)", "hydra.sweeper.strategy=random", "hydra.sweeper.max_trials=4", "hydra.sweeper.seed=3")
    rep = report(rnd)
    assert rep["trials_by_status"] == {"completed": 4} and rep["iid"] is True
    again = tmp_path / "random2"
    run(again, "x=interval(0,6)", "hydra.sweeper.strategy=random", "hydra.sweeper.max_trials=4", "hydra.sweeper.seed=3")

    def draws(path):
        return [(row["score"], row["overrides"]) for row in csv.DictReader(open(path / "budget_curve.csv"))]

    assert draws(rnd) == draws(again)  # same seed, same i.i.d. draws
    assert len({o for _, o in draws(rnd)}) == 4
    opt = tmp_path / "optuna"
    run(opt, "x=interval(0,6)", "hydra.sweeper.strategy=optuna", "hydra.sweeper.max_trials=3")
    assert report(opt)["trials_by_status"] == {"completed": 3}
    assert (opt / ".greenai" / "optuna.db").exists()


def test_hydra_plugin_scan_imports_neither_torch_nor_lightning():
    code = (
        "import sys; from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; "
        "names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]; "
        "print('GreenAISweeper' in names, 'torch' in sys.modules, 'lightning' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.strip()
    assert out == "True False False"


def test_no_hydra_plugins_init_file():
    assert not (ROOT / "hydra_plugins" / "__init__.py").exists()
