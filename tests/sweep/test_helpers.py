"""The sweeper's pure helpers: options, launcher parallelism, the cost estimate, the search space, the ledger."""

import json

import pytest
from omegaconf import OmegaConf

from lightning_greenai import BudgetConfigError, Method, Spend
from lightning_greenai.sweep.books import Book as _Book
from lightning_greenai.sweep.engine import BudgetSweep, merge_search_space
from lightning_greenai.sweep.history import Trial, replay
from lightning_greenai.sweep.launchers import launcher_parallelism
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.sweep.settle import launcher_reason
from lightning_greenai.sweep.strategies import OptunaStrategy


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("cost_quantile", 5, r"`hydra.sweeper.cost_quantile` must be a quantile in \[0, 1\], e.g. 0.9, got 5"),
        ("poll_s", 0, r"`hydra.sweeper.poll_s` must be a number of seconds >= 0.01 \(0 would spin\), got 0"),
        ("heartbeat_s", -1.0, r"`hydra.sweeper.heartbeat_s` must be a number of seconds >= 0, got -1.0"),
        ("trial_allowance", 0, r"`hydra.sweeper.trial_allowance` must be a multiple > 0 of a trial's cost"),
        ("max_failure_rate", 1.5, r"`hydra.sweeper.max_failure_rate` must be a number in \[0, 1\], got 1.5"),
        ("max_batch_size", 0, r"`hydra.sweeper.max_batch_size` must be an integer >= 1 or null, got 0"),
        ("max_trials", 2.5, r"`hydra.sweeper.max_trials` must be an integer >= 1 or null, got 2.5"),
        ("seed", "abc", r"`hydra.sweeper.seed` must be an integer, got 'abc'"),
        ("resume", "yes", r"`hydra.sweeper.resume` must be true or false, got 'yes'"),
        ("direction", "up", r"`hydra.sweeper.direction` must be 'max' or 'min', got 'up'"),
        ("direction", ["maximize", "minimize"], r"optimises one objective: `hydra.sweeper.direction` must be max"),
        ("n_trials", 3, r"`hydra.sweeper.n_trials` \(3\) is hydra-optuna-sweeper's name for `max_trials`, which is 5"),
        ("search_space", {"x": 1}, r"write each parameter under hydra.sweeper.params"),
        ("sampler", "tpe", r"must be an Optuna sampler config with a _target_"),
        ("score_bounds", [1, 0], r"`hydra.sweeper.score_bounds` must be finite with low < high, got \[1.0, 0.0\]"),
        ("score_bounds", "0..1", r"`hydra.sweeper.score_bounds` must be two numbers \[low, high\]"),
    ],
)
def test_every_option_is_checked_up_front_with_its_name_and_what_is_allowed(option, value, message):
    extra = {"max_trials": 5} if option == "n_trials" else {}
    with pytest.raises(BudgetConfigError, match=message):
        BudgetSweep(budget={"energy_kwh": "1 kWh"}, **extra, **{option: value})


def test_hydra_optuna_sweeper_spellings_are_accepted():
    sweep = BudgetSweep(
        budget={"energy_kwh": "1 kWh"},
        direction="maximize",
        n_trials=20,
        n_jobs=2,
        sampler={"_target_": "optuna.samplers.TPESampler", "seed": 1234},
    )
    assert (sweep.direction, sweep.max_trials, sweep.max_batch_size, sweep.strategy_name) == ("max", 20, 2, "optuna")
    rnd = BudgetSweep(budget={"energy_kwh": "1 kWh"}, sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 7})
    assert (rnd.strategy_name, rnd.seed, rnd.sampler) == ("random", 7, None)  # i.i.d.: our random search
    sampler = {"_target_": "optuna.samplers.RandomSampler", "seed": 3}
    explicit = BudgetSweep(budget={"energy_kwh": "1 kWh"}, strategy="optuna", sampler=sampler)
    assert explicit.strategy_name == "random"  # strategy=optuna with Optuna's random sampler: the same i.i.d. search


RAY = {"init": {"num_cpus": 6}, "remote": {"num_cpus": 2}}


@pytest.mark.parametrize(
    ("launcher", "expected"),
    [
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 1),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 3}, 3),
        ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "array_parallelism": 8}, 8),  # noqa: E501
        ({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", "ray": RAY}, 3),
        ({"_target_": "my.own.Launcher"}, 1),
    ],
)  # fmt: skip
def test_the_default_batch_is_what_the_launcher_runs_at_once(launcher, expected):
    parallel, why = launcher_parallelism(OmegaConf.create(launcher))
    assert parallel == expected and why


def test_joblib_negative_n_jobs_counts_back_from_the_cpus():
    import os

    cpus = len(os.sched_getaffinity(0))
    target = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert launcher_parallelism(OmegaConf.create({"_target_": target, "n_jobs": -1}))[0] == cpus
    assert launcher_parallelism(OmegaConf.create({"_target_": target, "n_jobs": -cpus - 5}))[0] == 1


def joules(j: float) -> Spend:
    return Spend(energy_j={"gpu:0": j}, methods={"gpu:0": Method.COUNTER}, duration_s=1.0)


def test_the_first_trial_of_a_process_does_not_rule_the_cost_estimate():
    sweep = BudgetSweep(budget={"energy_kwh": "80 J"})
    book = _Book(sweep, Spend())
    book.add(Trial(0, [], status="completed", spend=joules(33.0), warmup=True))  # imports, logger start-up
    assert book.estimates()["energy_kwh"] * 3.6e6 == pytest.approx(33.0)  # all we know so far
    for job, cost in enumerate([8.0, 7.0, 9.0], start=1):
        book.add(Trial(job, [], status="completed", spend=joules(cost)))
    # the 0.9 quantile of the trials without start-up costs: 8.8 J, not 33 J
    assert book.estimates()["energy_kwh"] * 3.6e6 == pytest.approx(8.8)


def test_failed_and_stopped_trials_do_not_make_the_estimate():
    sweep = BudgetSweep(budget={"energy_kwh": "80 J"})
    book = _Book(sweep, Spend())
    book.add(Trial(0, [], status="failed", spend=joules(1.0)))
    book.add(Trial(1, [], status="not_started", spend=joules(0.0)))
    assert book.estimates()["energy_kwh"] is None
    assert book.counted == 1 and book.failed == 1


def test_a_run_of_trials_that_fail_before_metering_ends_the_sweep_unless_it_has_come_out_of_such_runs():
    sweep = BudgetSweep(budget={"energy_kwh": "80 J"}, strategy="random", max_failure_rate=1.0)
    book = _Book(sweep, Spend())
    job = iter(range(100))

    def add(status: str, spend: Spend, times: int = 1) -> None:
        for _ in range(times):
            book.add(Trial(next(job), [], status=status, spend=spend))

    add("failed", Spend(), 8)  # a corner of the space that fails at start-up
    add("failed", joules(1.0))  # failed after metering: the budget sees it
    add("failed", Spend(), 9)
    assert sweep._failing(book) is None  # 9 in a row, not 10
    add("completed", joules(5.0))
    add("not_started", Spend(), 3)  # never ran: neither ends nor extends the run
    add("failed", Spend(), 26)
    assert sweep._failing(book) is None  # the sweep came out of 9 in a row: 3 x 9 = 27 is a run it would not
    add("failed", Spend())
    assert sweep._failing(book) == (
        "27 trials in a row failed without metering anything (no energy, FLOPs or time), so no budget can stop the "
        "sweep; it stops whatever max_failure_rate"
    )


def test_the_command_line_replaces_the_same_parameter_of_the_yaml():
    params = {"model.lr": "interval(1e-3,1e-2)", "model.width": "choice(32,64)", "seed": "1"}
    merged = merge_search_space(params, ["model.lr=interval(1e-4,1e-1)", "model.width=choice(64,128,256)", "x=1,2"])
    assert merged == ["model.lr=interval(1e-4,1e-1)", "model.width=choice(64,128,256)", "seed=1", "x=1,2"]


def test_a_parameter_given_twice_on_the_command_line_is_an_error_naming_it():
    with pytest.raises(BudgetConfigError, match=r"`model.lr` is given twice on the command line"):
        merge_search_space({}, ["model.lr=0.1,0.2", "model.lr=interval(0,1)"])


def test_damaged_ledger_lines_are_skipped_with_what_is_wrong(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("header", search={})
    ledger.append("launched", job=0, overrides=["x=1"])
    with open(ledger.path, "a") as fh:
        fh.write('{"event": "finished", "job": 0, "status": "completed", "objective": NaN, "spend": {}}\n')
        fh.write('{"event": "finished", "job": 0, "status": "exploded", "spend": {}}\n')
        fh.write('{"event": "finished", "job": 0, "status": "completed", "spend": {"energy_j": [1, 2]}}\n')
        fh.write("[1, 2, 3]\n")
        fh.write("\xff\xfe not utf-8 \n")
    events = Ledger(ledger.path).events()
    reader = Ledger(ledger.path)
    reader.events()
    assert [e["event"] for e in events] == ["header", "launched"]
    assert reader.corrupt_lines == [3, 4, 5, 6, 7]
    assert "objective nan, not a finite number" in reader.notes[0]
    assert "unknown status 'exploded'" in reader.notes[1]
    assert "energy_j must be a mapping" in reader.notes[2]
    assert "not a ledger event" in reader.notes[3]
    with pytest.raises(ValueError, match="not JSON compliant"):
        ledger.append("finished", job=0, objective=float("nan"))  # never written: NaN is not JSON
    assert "NaN" not in ledger.path.read_text().splitlines()[-1]
    json.loads(ledger.path.read_text().splitlines()[1])


def test_every_session_of_a_sweep_counts_toward_its_wall_time():
    events = [
        {"event": "header", "time": 100.0},
        {"event": "launched", "time": 101.0, "job": 0, "overrides": []},
        {"event": "finished", "time": 104.0, "job": 0, "status": "completed", "spend": {}},
        {"event": "launched", "time": 104.5, "job": 1, "overrides": []},  # then the sweeper died
        {"event": "resumed", "time": 200.0},
        {"event": "launched", "time": 200.5, "job": 2, "overrides": [], "rerun_of": 1},
        {"event": "finished", "time": 203.0, "job": 2, "status": "completed", "spend": {}},
        {"event": "stopped", "time": 203.5},
    ]
    history = replay(events)
    assert history.proposed == 2 and history.rerun == {1}
    assert history.elapsed_s({}) == pytest.approx(4.5 + 3.5)
    assert history.elapsed_s({1: 107.0}) == pytest.approx(7.0 + 3.5)  # its last heartbeat: alive until then


def test_optuna_is_told_by_trial_number(tmp_path):
    pytest.importorskip("optuna")
    strategy = OptunaStrategy(["x=choice(1)"], storage_dir=tmp_path, direction="max")
    jobs = strategy.ask(3)
    assert jobs == [["x=1"]] * 3 and strategy.ids == [0, 1, 2]
    for job_num, (status, value) in enumerate([("completed", 1.0), ("budget_stopped", None), ("not_started", None)]):
        strategy.tell(job_num, jobs[job_num], value, status, strategy.ids[job_num])
    strategy.tell(9, jobs[0], 2.0, "completed", 0)  # told again (a resume recovering it): the first answer stays
    assert [t.state.name for t in strategy.study.trials] == ["COMPLETE", "PRUNED", "FAIL"]
    assert strategy.study.trials[0].value == 1.0


def test_every_logger_of_a_dict_or_list_gets_the_curves():
    from lightning_greenai.reporting.sweep_files import _logger_nodes

    csv = {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": "."}
    tb = {"_target_": "lightning.pytorch.loggers.TensorBoardLogger", "save_dir": "."}
    assert len(_logger_nodes(OmegaConf.create(csv))) == 1
    assert len(_logger_nodes(OmegaConf.create({"csv": csv, "tensorboard": tb}))) == 2  # the template's many_loggers
    assert len(_logger_nodes(OmegaConf.create([csv, tb]))) == 2
    assert _logger_nodes(OmegaConf.create({"csv": None, "note": "no target here"})) == []


def test_a_changed_search_is_told_by_what_changed():
    from lightning_greenai.sweep.resume import _search_changes

    then = {"arguments": ["x=1,2"], "strategy": "asha", "rungs": {"min_resource": 1, "reduction_factor": 3}}
    now = {"arguments": ["x=1,2"], "strategy": "asha", "rungs": {"min_resource": 2, "reduction_factor": 3}, "seed": 0}
    assert _search_changes(then, now) == "rungs.min_resource: 1 vs 2; seed: None vs 0"
    assert _search_changes("damaged", now).startswith("the search: 'damaged' vs {")


def _fails_in_its_job() -> None:
    raise RuntimeError("the job's own error")


def test_what_a_launcher_raised_is_one_line_ending_with_the_jobs_own_error(tmp_path):
    import submitit

    # submitit's FailedJobError quotes the job's whole traceback between rulers, then where its logs are
    executor = submitit.LocalExecutor(folder=tmp_path)
    executor.update_parameters(timeout_min=1)
    job = executor.submit(_fails_in_its_job)
    with pytest.raises(submitit.core.utils.FailedJobError) as raised:
        job.result()
    reason = launcher_reason(raised.value)
    assert reason.startswith("the launcher raised FailedJobError: Job (task=0) failed during processing with trace; ")
    assert reason.endswith("RuntimeError: the job's own error"), reason
    assert "\n" not in reason and "check full logs" not in reason
    # a message with no trace is its lines up to the logs it quotes; a long one is cut
    lost = submitit.core.utils.UncompletedJobError(
        "Job 7_1 (task: 0) with path /x/7_1_result.pkl\nhas not produced any output (state: TIMEOUT)\n"
        "Error stream produced:\n----\nslurmstepd: error: *** JOB 7 CANCELLED DUE TO TIME LIMIT ***"
    )
    assert launcher_reason(lost) == (
        "the launcher raised UncompletedJobError: Job 7_1 (task: 0) with path /x/7_1_result.pkl "
        "has not produced any output (state: TIMEOUT)"
    )
    assert len(launcher_reason(RuntimeError("x" * 1000))) == 400
