"""CI runs the repository's pre-commit checks on every tracked file: lint, format, no large or binary files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pre_commit(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the venv's ruff
        "PRE_COMMIT_HOME": str(home),  # its cache in the test's folder, not the user's
    }
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def git_checkout() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("the pre-commit checks run on a git checkout (this is an unpacked source tree)")


@pytest.mark.timeout(900)
@pytest.mark.usefixtures("git_checkout")
def test_every_tracked_file_passes_the_pre_commit_checks(tmp_path: Path) -> None:
    done = _pre_commit("--all-files", "--show-diff-on-failure", home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("git_checkout")
def test_a_committed_database_is_refused(tmp_path: Path) -> None:
    """The check that would have kept the SQLite file ``500`` out of the repository."""
    database = ROOT / "tests" / f"hygiene-{os.getpid()}.db"
    database.write_bytes(b"SQLite format 3\x00" + bytes(range(256)))
    try:
        done = _pre_commit("no-binary-files", "--files", str(database), home=tmp_path)
    finally:
        database.unlink()
    assert done.returncode == 1
    assert database.name in done.stdout and "binary files are not committed" in done.stdout
