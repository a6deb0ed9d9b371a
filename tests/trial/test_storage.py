"""The sweep's signals through a database (``hydra.sweeper.storage``): SQLite, and a real PostgreSQL server."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from lightning_greenai.errors import StateWriteError
from lightning_greenai.spend import Spend
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.trial.account import TrialReporter
from lightning_greenai.trial.channel import SqlChannel, open_channel, read_record
from tests.postgres_server import PostgresServer, ensure_installed, postgres_server
from tests.sweep.test_faults import two_jobs_in_flight_overshoot_by_at_most_one_step_each
from tests.sweep.test_sweeper import finished, report, run

JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def rows(url: str) -> dict[str, dict[tuple[str, int], str]]:
    """Every signal in the database, by sweep, then (kind, job)."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(sqlalchemy.text("SELECT sweep, kind, job_num, body FROM greenai_signals")).fetchall()
    finally:
        engine.dispose()
    out: dict[str, dict[tuple[str, int], str]] = {}
    for sweep, kind, job, body in found:
        out.setdefault(sweep, {})[(kind, job)] = body
    return out


def key(sweep_dir: Path) -> str:
    """The id that keys a sweep's signals: the one its ledger's header records."""
    header = Ledger(sweep_dir / ".greenai" / "ledger.jsonl").header()
    assert header is not None and header["sweep_id"]
    return str(header["sweep_id"])


def no_job_wrote_in_the_sweep_dir(sweep_dir: Path) -> None:
    """The jobs talked through the database: no heartbeat, allowance or STOP file, no job folder in the sweep dir."""
    state = sweep_dir / ".greenai"
    assert not (state / "trials").exists(), list((state / "trials").iterdir())
    assert not (state / "STOP").exists()
    assert not [p for p in sweep_dir.iterdir() if p.name.isdigit()], list(sweep_dir.iterdir())


# -- the channel on SQLite -------------------------------------------------------------------------------------------


def test_two_sweeps_on_one_database_never_see_each_others_signals(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    a, b = SqlChannel(url, "/sweeps/a", create=True), SqlChannel(url, "/sweeps/b", create=True)
    a.put("heartbeat", 0, json.dumps({"job_num": 0, "spend": {"energy_j": {"gpu:0": 5.0}}}))
    a.put("stop", None, json.dumps({"policy": "graceful", "reason": "budget reached"}))
    assert b.get("heartbeat", 0) is None and b.get("stop", None) is None
    b.put("heartbeat", 0, json.dumps({"job_num": 0, "spend": {"energy_j": {"gpu:0": 7.0}}}))
    a.put("heartbeat", 0, json.dumps({"job_num": 0, "spend": {"energy_j": {"gpu:0": 6.0}}}))  # replaced, not added
    assert read_record(a, 0).spend.energy_j == {"gpu:0": 6.0}
    assert read_record(b, 0).spend.energy_j == {"gpu:0": 7.0}
    a.delete("stop", None)
    assert a.get("stop", None) is None
    assert rows(url)["/sweeps/a"].keys() == {("heartbeat", 0)}


def test_a_damaged_heartbeat_row_is_a_note_and_never_trusted(tmp_path):
    channel = SqlChannel(f"sqlite:///{tmp_path / 's.db'}", "sweep", create=True)
    channel.put("heartbeat", 3, "{not json")
    notes: list[str] = []
    assert read_record(channel, 3, notes) is None
    assert notes == [f"heartbeat {channel.where('heartbeat', 3)} is not valid JSON: ignored"]
    channel.put("heartbeat", 4, json.dumps({"job_num": 4, "spend": {"energy_j": {"gpu:0": -5}}}))
    assert read_record(channel, 4, notes) is None and "is damaged" in notes[-1]


def test_a_trial_account_bills_through_the_database_and_a_requeue_continues_it(tmp_path):
    channel = open_channel("/sweeps/a", f"sqlite:///{tmp_path / 's.db'}", create=True)
    account = TrialReporter(channel, 3, heartbeat_s=0)
    account.contribute("meter", Spend(energy_j={"gpu:0": 10.0}))
    account.finish("interrupted")
    again = TrialReporter(channel, 3, heartbeat_s=0)  # the same job number: a requeued job continues its spend
    again.contribute("meter", Spend(energy_j={"gpu:0": 4.0}))
    again.finish("completed", 1.5)
    record = read_record(channel, 3)
    assert (record.status, record.objective, record.spend.energy_j) == ("completed", 1.5, {"gpu:0": 14.0})


def test_a_job_asks_the_database_for_its_signals_at_most_once_per_signal_s(tmp_path):
    channel = open_channel("/sweeps/a", f"sqlite:///{tmp_path / 's.db'}", create=True)
    sweeper = open_channel("/sweeps/a", f"sqlite:///{tmp_path / 's.db'}")
    # two jobs: one reads every 0.3 s, one every hour (less than an hour passes here however slow the machine is)
    account = TrialReporter(channel, 0, heartbeat_s=0, signal_s=0.3)
    hourly = TrialReporter(
        open_channel("/sweeps/a", f"sqlite:///{tmp_path / 's.db'}"), 1, heartbeat_s=0, signal_s=3600.0
    )
    assert account.stop_request() is None and hourly.stop_request() is None
    sweeper.put("stop", None, json.dumps({"policy": "graceful", "reason": "budget reached"}))
    sweeper.put("allowance", 0, json.dumps({"sweep": {"energy_kwh": 1e-6}, "policy": "graceful"}))
    assert hourly.stop_request() is None  # read less than signal_s ago: not asked again yet
    time.sleep(0.35)
    assert account.stop_request() == {"policy": "graceful", "reason": "budget reached"}
    assert account.allowance()["sweep"] == {"energy_kwh": 1e-6}
    assert hourly.stop_request() is None


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("not a url", "hydra.sweeper.storage='not a url' is not a database URL. Allowed: a SQLAlchemy URL"),
        ("mysql://u@127.0.0.1/db", "needs the mysql driver `MySQLdb`, which is not installed"),
        ("sqlite://s.db", "puts 's.db' where SQLite has no host: a SQLite URL has three slashes"),
        ("sqlite:///:memory:", "is an in-memory database, private to one process"),
    ],
)
def test_a_bad_storage_is_refused_before_anything_runs(tmp_path, storage, message):
    sweep_dir = tmp_path / "sweep"
    proc = run(sweep_dir, "x=0,1", f"hydra.sweeper.storage='{storage}'", check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (sweep_dir / ".greenai" / "ledger.jsonl").exists()


def test_a_database_error_waiting_will_not_mend_is_said_at_once_with_what_to_do(tmp_path):
    start = time.monotonic()
    with pytest.raises(StateWriteError, match=r"open database file\. The SQLite file.s folder does not exist"):
        open_channel(tmp_path / "sweep", f"sqlite:///{tmp_path / 'missing' / 's.db'}", create=True)
    assert time.monotonic() - start < 30  # not retried for the minute a dropped connection gets


def test_a_relative_sqlite_uri_is_made_absolute_and_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    channel = open_channel(tmp_path / "sweep", "sqlite:///file:signals.db?uri=true", cwd=tmp_path, create=True)
    channel.put("stop", None, "STOP")
    assert channel.get("stop", None) == "STOP"
    assert (tmp_path / "signals.db").exists()  # the file SQLite's URI names, not a "file:signals.db" folder entry


@pytest.mark.timeout(300)
def test_a_budget_sweep_through_sqlite_holds_its_budget_and_writes_no_trial_files(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # a relative SQLite path is the launch folder's (the sweep dir's parent here), for the sweeper and every job
    two_jobs_in_flight_overshoot_by_at_most_one_step_each(sweep_dir, *JOBLIB, "hydra.sweeper.storage=sqlite:///s.db")
    assert not (sweep_dir / ".greenai" / "trials").exists()
    signals = rows(f"sqlite:///{tmp_path / 's.db'}")[key(sweep_dir)]
    assert {job for kind, job in signals if kind == "heartbeat"} == set(finished(sweep_dir))
    for job, event in finished(sweep_dir).items():
        heartbeat = json.loads(signals[("heartbeat", job)])
        assert Spend.from_dict(heartbeat["spend"]).energy_j == Spend.from_dict(event["spend"]).energy_j


# -- a real PostgreSQL server ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    reason = ensure_installed()
    if reason is not None:
        pytest.skip(reason)
    with postgres_server() as started:
        yield started


def own_dirs(tmp_path: Path) -> str:
    """Each job's working dir on a 'host' of its own, outside the sweep dir (absolute ``hydra.sweep.subdir``)."""
    return f"hydra.sweep.subdir={tmp_path}/hosts/job$${{hydra.job.num}}".replace("$$", "$")


@pytest.mark.postgresql
@pytest.mark.timeout(300)
def test_a_budget_sweep_on_postgresql_holds_with_each_job_in_its_own_dir(server, tmp_path):
    sweep_dir = tmp_path / "sweep"
    two_jobs_in_flight_overshoot_by_at_most_one_step_each(
        sweep_dir, *JOBLIB, f"hydra.sweeper.storage={server.url}", own_dirs(tmp_path)
    )
    no_job_wrote_in_the_sweep_dir(sweep_dir)
    assert sorted(int(p.name[3:]) for p in (tmp_path / "hosts").iterdir()) == sorted(finished(sweep_dir))
    signals = rows(server.url)[key(sweep_dir)]
    for job, event in finished(sweep_dir).items():  # the final records the sweeper billed are the jobs' own
        heartbeat = json.loads(signals[("heartbeat", job)])
        assert heartbeat["status"] == event["status"]
        assert Spend.from_dict(heartbeat["spend"]).energy_j == Spend.from_dict(event["spend"]).energy_j
        assert ("allowance", job) in signals


@pytest.mark.postgresql
@pytest.mark.timeout(300)
def test_two_sweeps_on_one_postgresql_database_at_once_are_kept_apart(server, tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    common = ("x=interval(0,6)", "hydra.sweeper.strategy=optuna", "hydra.sweeper.max_trials=4", "steps=5")
    procs: dict[Path, subprocess.CompletedProcess] = {}

    def sweep(d: Path) -> None:
        procs[d] = run(d / "sweep", *common, f"hydra.sweeper.storage={server.url}", *JOBLIB, check=False)

    runs = [threading.Thread(target=sweep, args=(d,)) for d in dirs]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    for proc in procs.values():
        assert proc.returncode == 0, proc.stderr[-3000:]
    signals = rows(server.url)
    engine = sqlalchemy.create_engine(server.url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            studies = {name for (name,) in conn.execute(sqlalchemy.text("SELECT study_name FROM studies"))}
    finally:
        engine.dispose()
    for d in dirs:
        sweep_dir = d / "sweep"
        assert report(sweep_dir)["trials_by_status"] == {"completed": 4}  # each its own 4 trials, 5 J each
        assert report(sweep_dir)["spend"]["energy_j"] == {"gpu:0": pytest.approx(20.0)}
        assert {job for kind, job in signals[key(sweep_dir)] if kind == "heartbeat"} == {0, 1, 2, 3}
        assert str(sweep_dir) in studies  # and each its own Optuna study


@pytest.mark.postgresql
@pytest.mark.timeout(300)
def test_dropped_connections_and_a_server_restart_mid_sweep_lose_nothing(server, tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = threading.Event()
    dropped: list[int] = []

    def cut() -> None:  # the network drops every connection, again and again, and the server restarts once
        restarted = False
        while not done.wait(0.3):
            dropped.append(server.drop_connections())
            if len(dropped) == 6 and not restarted:
                restarted = True
                server.restart()

    cutter = threading.Thread(target=cut)
    cutter.start()
    try:
        run(
            sweep_dir,
            "x=0,1,2,3,4,5",
            "steps=10",
            "step_s=0.05",
            "hydra.sweeper.budget.energy_kwh=1000 J",  # a budget, so the watchdog reads the heartbeats all along
            f"hydra.sweeper.storage={server.url}",
            *JOBLIB,
        )
    finally:
        done.set()
        cutter.join()
    assert sum(dropped) > 0 and len(dropped) >= 6  # connections were really cut, and the server restarted
    rep = report(sweep_dir)
    # every trial completed and billed exactly: 10 steps of 1 J each, none lost with a dropped connection
    assert rep["trials_by_status"] == {"completed": 6}
    assert {job: event["spend"]["energy_j"] for job, event in finished(sweep_dir).items()} == {
        job: {"gpu:0": 10.0} for job in range(6)
    }
    assert rep["spend"]["energy_j"] == {"gpu:0": pytest.approx(60.0)}


@pytest.mark.timeout(300)
def test_two_live_sweeps_given_the_same_study_name_still_keep_their_signals_apart(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    common = ("x=0,1,2", "steps=20", "step_s=0.02", "hydra.sweeper.budget.energy_kwh=1 kWh", *JOBLIB)
    procs: dict[str, subprocess.CompletedProcess] = {}

    def sweep(name: str) -> None:
        (tmp_path / name).mkdir()
        procs[name] = run(tmp_path / name / "sweep", *common, f"hydra.sweeper.storage={url}",
                          "hydra.sweeper.study_name=same", check=False)  # fmt: skip

    threads = [threading.Thread(target=sweep, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, proc in procs.items():
        assert proc.returncode == 0, proc.stderr[-3000:]
        spent = {job: e["spend"]["energy_j"]["gpu:0"] for job, e in finished(tmp_path / name / "sweep").items()}
        assert spent == dict.fromkeys(range(3), 20.0), (name, spent)  # 20 steps of 1 J: never the other's


def test_a_second_sweep_given_an_existing_study_name_is_told_it_continues_that_study(tmp_path):
    pytest.importorskip("optuna")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    common = ("x=range(0,5)", "hydra.sweeper.strategy=optuna", "hydra.sweeper.max_trials=2",
              f"hydra.sweeper.storage={url}", "hydra.sweeper.study_name=mine")  # fmt: skip
    first = run(tmp_path / "first", *common)
    assert "already holds" not in first.stdout + first.stderr
    second = run(tmp_path / "second", *common)
    assert "The Optuna study 'mine' already holds 2 trial(s) that this sweep did not run" in second.stdout


def read_only(server: PostgresServer, on: bool) -> None:
    """A failover's read-only episode: sessions opened now cannot write (those open before are unchanged)."""
    engine = sqlalchemy.create_engine(server.url, poolclass=sqlalchemy.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SET default_transaction_read_only = off"))  # this session may always write
            setting = "on" if on else "off"
            conn.execute(sqlalchemy.text(f"ALTER DATABASE postgres SET default_transaction_read_only = {setting}"))
    finally:
        engine.dispose()


@pytest.mark.postgresql
@pytest.mark.timeout(120)
def test_a_read_only_episode_leaves_no_pooled_connection_read_only(server, tmp_path):
    channel = SqlChannel(server.url, f"read-only-{tmp_path.name}", create=True)
    channel.put("heartbeat", 0, '{"seq": 1}')
    try:
        read_only(server, True)
        server.drop_connections()  # the pool reconnects during the episode: a read-only session
        with pytest.raises(StateWriteError, match="read-only transaction"):
            channel.put("heartbeat", 0, '{"seq": 2}')
    finally:
        read_only(server, False)
    channel.put("heartbeat", 0, '{"seq": 3}', patience_s=5.0)  # the episode is over: a fresh session writes
    assert channel.get("heartbeat", 0) == '{"seq": 3}'


# -- one sweep, one key, one database --------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_resume_through_a_symlinked_sweep_dir_finds_its_jobs_records(tmp_path):
    # the jobs' signals are keyed by the id in the ledger, not by the path the sweep dir is reached by
    real, link = tmp_path / "real", tmp_path / "link"
    storage = f"hydra.sweeper.storage=sqlite:///{tmp_path / 's.db'}"
    common = ("x=0,1,2", "steps=4", storage, "crash_at=2", "crash_x=1", f"crash_once_file={tmp_path / 'once'}")
    assert run(real, *common, check=False).returncode == 17  # died at job 1's 3rd step: 2 J on its heartbeat
    link.symlink_to(real, target_is_directory=True)
    resumed = run(link, *common, "hydra.sweeper.resume=true")
    jobs = finished(real)
    assert jobs[1]["status"] == "interrupted"
    assert jobs[1]["spend"]["energy_j"] == {"gpu:0": 2.0}  # billed at its heartbeat, found under the sweep's id
    assert "resuming" in resumed.stdout
    assert set(rows(f"sqlite:///{tmp_path / 's.db'}")) == {key(real)}


@pytest.mark.timeout(300)
def test_a_resume_reaching_another_database_is_refused_naming_both(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, "x=0,1", f"hydra.sweeper.storage=sqlite:///{tmp_path / 'a.db'}")
    proc = run(
        sweep_dir, "x=0,1", f"hydra.sweeper.storage=sqlite:///{tmp_path / 'b.db'}", "hydra.sweeper.resume=true",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"was sqlite:///{tmp_path / 'a.db'}, now sqlite:///{tmp_path / 'b.db'}" in proc.stderr
    assert f"Resume with hydra.sweeper.storage=sqlite:///{tmp_path / 'a.db'}" in proc.stderr


def test_two_sweeps_of_one_path_are_two_keys(tmp_path):
    # two machines' sweep dirs of the same path (here: the same dir, used again after the first was moved away)
    url = f"sqlite:///{tmp_path / 's.db'}"
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, "x=0,1", f"hydra.sweeper.storage={url}")
    first = key(sweep_dir)
    sweep_dir.rename(tmp_path / "moved")
    run(sweep_dir, "x=0,1", f"hydra.sweeper.storage={url}")
    assert key(sweep_dir) != first and set(rows(url)) == {first, key(sweep_dir)}


def test_a_literal_password_in_the_storage_url_is_refused_and_never_printed(tmp_path):
    proc = run(
        tmp_path / "sweep", "x=0,1", "hydra.sweeper.storage=postgresql://user:s3cret@127.0.0.1:1/db", check=False
    )
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert "holds a password" in said and "PGPASSWORD" in said and "${oc.env:DB_PASSWORD}" in said
    assert "s3cret" not in said
    assert (
        not (tmp_path / "sweep" / "multirun.yaml").exists()
        or "s3cret" not in (tmp_path / "sweep" / "multirun.yaml").read_text()
    )


@pytest.mark.postgresql
@pytest.mark.timeout(300)
def test_a_password_from_the_environment_reaches_the_database_and_no_file(server, tmp_path, monkeypatch):
    monkeypatch.setenv("GREENAI_TEST_DB_PASSWORD", "s3cret")
    url = server.url.replace("postgres@", "postgres:${oc.env:GREENAI_TEST_DB_PASSWORD}@")
    sweep_dir = tmp_path / "sweep"
    proc = run(sweep_dir, "x=0,1", f"hydra.sweeper.storage='{url}'")
    assert report(sweep_dir)["trials_by_status"] == {"completed": 2}
    assert "s3cret" not in proc.stdout + proc.stderr
    written = [p for p in sweep_dir.rglob("*") if p.is_file() and b"s3cret" in p.read_bytes()]
    assert written == []


@pytest.mark.postgresql
@pytest.mark.timeout(120)
def test_a_postgresql_login_that_waiting_will_not_mend_is_said_at_once(server, tmp_path, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    hba = server.data / "pg_hba.conf"
    saved = hba.read_text()
    engine = sqlalchemy.create_engine(server.url, poolclass=sqlalchemy.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("DROP ROLE IF EXISTS pwuser"))
            conn.execute(sqlalchemy.text("CREATE ROLE pwuser LOGIN PASSWORD 'x'"))
        lines = (
            "host all postgres 127.0.0.1/32 trust\nhost all pwuser 127.0.0.1/32 scram-sha-256\nlocal all all trust\n"
        )
        hba.write_text(lines)
        assert server.pg_ctl("reload").returncode == 0
        for user, said in (("pwuser", "no password supplied"), ("stranger", "no pg_hba.conf entry")):
            start = time.monotonic()
            with pytest.raises(StateWriteError, match=said):
                open_channel(tmp_path / "sweep", server.url.replace("postgres@", f"{user}@"), create=True)
            assert time.monotonic() - start < 30  # not retried for the minute a dropped connection gets
    finally:
        hba.write_text(saved)
        server.pg_ctl("reload")
        engine.dispose()


@pytest.mark.postgresql
@pytest.mark.timeout(400)
def test_the_database_down_for_over_a_minute_mid_trial_never_books_a_stale_heartbeat(server, tmp_path):
    """Issue 20: a trial was recorded ``completed`` at its last heartbeat (186 J booked for 220 J) after an outage."""
    sweep_dir = tmp_path / "sweep"
    down = threading.Event()
    outage_s = 65.0

    def outage() -> None:  # once trial 0 has beaten through the database, the server is down for over a minute
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ("heartbeat", 0) not in _signals(server.url, sweep_dir):
            time.sleep(0.2)
        server.pg_ctl("-m", "fast", "stop")
        down.set()
        time.sleep(outage_s)
        server.start()

    cutter = threading.Thread(target=outage)
    cutter.start()
    try:
        proc = run(
            sweep_dir,
            "x=0,1",
            "steps=60",
            "step_s=0.5",  # trial 0 runs 30 s: it ends, and tries to deliver its final record, while the server is down
            "hydra.sweeper.heartbeat_s=1",
            "hydra.sweeper.budget.energy_kwh=1000 J",
            f"hydra.sweeper.storage={server.url}",
            check=False,
        )
    finally:
        cutter.join()
    assert down.is_set()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    booked = finished(sweep_dir)
    # each trial's 60 steps of 1 J reached the books in full: its final record, kept by the job through the outage
    assert {job: (e["status"], e["spend"]["energy_j"]) for job, e in booked.items()} == {
        job: ("completed", {"gpu:0": 60.0}) for job in (0, 1)
    }
    assert report(sweep_dir)["spend"]["energy_j"] == {"gpu:0": pytest.approx(120.0)}


def _signals(url: str, sweep_dir: Path) -> set[tuple[str, int]]:
    """The (kind, job) of a sweep's rows in the signal table; none before its ledger or table exist."""
    try:
        return set(rows(url).get(key(sweep_dir), {}))
    except (sqlalchemy.exc.SQLAlchemyError, OSError, AssertionError):
        return set()
