"""Time of the expected-performance curve with its confidence bands, by sweep size. Run: python benchmarks/evp_bands.py

For each number of trials, a sweep's ledger is written (scores from a known distribution) and loaded, and the time
of ``SweepSummary.evp()`` (both EVP estimators for n = 1..N and the simultaneous bands at every n) is measured cold
(the first call in a fresh process: LD's simulated critical value included) and warm (the same sweep again).
Target: under 1 s for 1,000 trials. Also times ``greenai compare`` of two such sweeps (200 budgets, both bands) and
one ``stop_when`` decision (the rule runs once per sweep batch; target 50 ms).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import sys, time
import numpy as np
sys.path.insert(0, {root!r})
from tests.reporting.test_compare_verdict import write_sweep
from lightning_greenai.reporting.summary import load
from lightning_greenai.reporting.verdict import compare_at_budgets
n, folder = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
a = write_sweep(__import__("pathlib").Path(folder) / "a", rng.beta(5, 2, n), energy_j=10.0)
b = write_sweep(__import__("pathlib").Path(folder) / "b", rng.beta(4, 2, n), energy_j=8.0)
sa, sb = load(a), load(b)
t0 = time.perf_counter(); rows = sa.evp(); cold = time.perf_counter() - t0
sa = load(a)
t0 = time.perf_counter(); sa.evp(); warm = time.perf_counter() - t0
t0 = time.perf_counter(); compare_at_budgets(sa, sb, "energy_kwh"); cmp = time.perf_counter() - t0
from lightning_greenai.budget.gain import GainRule
rule = GainRule.parse({{"gain_per_kwh": 1.0}})
scores = sa.scores()
rule.verdict(scores[:-1], {{"energy_kwh": 1e-6}}, bounds=(0, 1), direction="max")  # the previous batch's n
t0 = time.perf_counter()
rule.verdict(scores, {{"energy_kwh": 1e-6}}, bounds=(0, 1), direction="max")
gain = time.perf_counter() - t0
print(f"{{n}} {{cold:.3f}} {{warm:.3f}} {{cmp:.3f}} {{gain * 1e3:.2f}} {{sa.method_of_bands}}")
"""


def main() -> None:
    root = str(Path(__file__).resolve().parents[1])
    print("| trials | band | evp() cold | evp() warm | compare (200 budgets) | stop_when per batch |")
    print("|---|---|---|---|---|---|")
    for n in (10, 40, 41, 100, 1000):
        with tempfile.TemporaryDirectory() as folder:
            out = subprocess.run(
                [sys.executable, "-c", CHILD.format(root=root), str(n), folder],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
        trials, cold, warm, compare, gain, method = out
        print(
            f"| {trials} | {method} | {float(cold):.3f} s | {float(warm):.3f} s | {float(compare):.3f} s "
            f"| {float(gain):.2f} ms |"
        )
        time.sleep(0.1)


if __name__ == "__main__":
    main()
