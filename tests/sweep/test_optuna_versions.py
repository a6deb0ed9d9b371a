"""The Optuna strategy across the Optuna versions projects pin: the oldest supported (2.10, what hydra-optuna-sweeper
allows) in a dedicated environment, and the newest (the test environment's)."""

import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = textwrap.dedent(
    """
    import sys, tempfile
    from pathlib import Path
    import optuna
    from lightning_greenai.sweep.strategies import OptunaStrategy

    folder = Path(tempfile.mkdtemp())
    strategy = OptunaStrategy(["x=interval(0,1)", "y=choice(a,b)", "n=range(1,4)"], storage_dir=folder, direction="max")
    jobs = strategy.ask(4)
    assert len(jobs) == 4 and strategy.ids == [0, 1, 2, 3], strategy.ids
    outcomes = [("completed", 0.5), ("budget_stopped", None), ("failed", None), ("interrupted", None)]
    for job, (status, value) in enumerate(outcomes):
        strategy.tell(job, jobs[job], value, status, strategy.ids[job])
    strategy.tell(9, jobs[0], 0.9, "completed", 0)  # told twice: kept as first told
    again = OptunaStrategy(["x=interval(0,1)", "y=choice(a,b)", "n=range(1,4)"], storage_dir=folder, direction="max")
    again.tell(7, jobs[3], 0.7, "completed", 3)  # a rerun after a resume: told under its first number
    states = [t.state.name for t in again.study.trials]
    assert states == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE"], states
    from lightning_greenai.errors import MissingDependencyError
    try:  # the cost-aware sampler needs Optuna 3.2's search-space helpers: older ones get a clear refusal
        OptunaStrategy(["x=interval(0,1)"], storage_dir=folder / "ca", direction="max", cost_aware=True)
    except MissingDependencyError as err:
        assert optuna.__version__ < "3" and "needs Optuna 3.2 or newer" in str(err), err
    else:
        assert optuna.__version__ >= "3.2", optuna.__version__
    print("optuna", optuna.__version__, "ok")
    """
)


def test_the_newest_optuna():
    pytest.importorskip("optuna")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("sqlalchemy", ["sqlalchemy<2", "sqlalchemy>=2"])
def test_the_oldest_supported_optuna_in_its_own_environment(tmp_path, sqlalchemy):
    """optuna 2.10 as a project pinning hydra-optuna-sweeper has it, installed in a fresh venv: with SQLAlchemy 1.4
    it works; with SQLAlchemy 2 (which the lightning-hydra-template's requirements install) its database storage
    cannot, and the strategy says so and how out, instead of failing inside SQLAlchemy."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "optuna==2.10.1", sqlalchemy, "hydra-core>=1.3", "psutil",
         "filelock", "numpy<2"],
        capture_output=True,
        text=True,
        timeout=500,
    )  # fmt: skip
    if install.returncode != 0:
        pytest.skip(f"cannot install optuna 2.10 here (no package index?): {install.stderr[-500:]}")
    proc = subprocess.run(
        [str(python), "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if sqlalchemy == "sqlalchemy<2":
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip() == "optuna 2.10.1 ok"
    else:
        assert proc.returncode != 0
        assert "MissingDependencyError" in proc.stderr and "Optuna 2.10.1 cannot open with SQLAlchemy 2" in proc.stderr
        assert "pip install 'sqlalchemy<2'" in proc.stderr and "pip install 'optuna>=3'" in proc.stderr
