import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_digits_example_prints_and_writes_a_price_tag(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "digits.py"), "--max-epochs", "1", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lightning-greenai price tag (fit)" in proc.stdout
    (tag_path,) = tmp_path.rglob("price_tag.json")
    tag = json.loads(tag_path.read_text())
    assert tag["energy_kwh"] > 0
    assert tag["grid"]["country"] == "DE"
    assert tag["stages_energy_kwh"].keys() == {"train", "validate"}


def test_plain_loop_example(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "plain_loop.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "price tag (plain loop)" in proc.stdout
