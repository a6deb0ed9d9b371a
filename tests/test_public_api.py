import subprocess
import sys

import lightning_greenai


def test_all_is_sorted_and_complete():
    names = [n for n in lightning_greenai.__all__ if n != "__version__"]
    assert names == sorted(names)
    modules = {
        "budget",
        "callbacks",
        "conf",
        "errors",
        "exporters",
        "flops",
        "grid",
        "hardware",
        "io",
        "metering",
        "reporting",
        "sensors",
        "spend",
        "stats",
        "sweep",
        "testing",
        "trial",
        "units",
    }
    typing_names = {"annotations", "TYPE_CHECKING", "Any"}
    public = {n for n in dir(lightning_greenai) if not n.startswith("_")} - modules - typing_names
    assert public == set(names)
    for name in names:
        assert getattr(lightning_greenai, name) is not None


def run_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_metering_core_does_not_import_pandas_lightning_or_hydra():
    out = run_python(
        "import sys; from lightning_greenai.metering.meter import Meter; from lightning_greenai.budget import Budget; "
        "from lightning_greenai.sensors import discover_sensors; "
        "print(sorted(m for m in ('pandas', 'lightning', 'hydra', 'pynvml') if m in sys.modules))"
    )
    assert out == "[]"


def test_import_works_without_nvml():
    out = run_python(
        "import sys; sys.modules['pynvml'] = None; import lightning_greenai; "
        "from lightning_greenai.sensors import discover_sensors; "
        "d = discover_sensors(host=False); print(len(d.sensors), 'library not found' in d.summary())"
    )
    assert out == "0 True"
