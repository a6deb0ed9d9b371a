"""Time of the expected-performance curve with its confidence bands, by sweep size. Run: python benchmarks/evp_bands.py

For each number of trials, a sweep's ledger is written (scores from a known distribution) and loaded, and the time
of ``SweepSummary.evp()`` (both EVP estimators for n = 1..N and the simultaneous bands at every n) is measured cold
(the first call in a fresh process: LD's simulated critical value included) and warm (the same sweep again).
Target: under 1 s for 1,000 trials. Also times ``greenai compare`` of two such sweeps (200 budgets, both bands) and
one ``stop_when`` decision (the rule runs once per sweep batch; target 50 ms), and the extrapolation past the
trials run (``SweepSummary.extrapolation()``, N to 4N trials; EVP, bands and extrapolation together: target 1 s).
Then the extrapolation's interval: how often it covers the true curve at 2N and 5N trials over 100 repetitions of
scores drawn from quadratic-tail distributions (Lourie, He & Cho 2025), with and without evaluation noise.
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
t0 = time.perf_counter(); sa.extrapolation(); extra = time.perf_counter() - t0
t0 = time.perf_counter(); compare_at_budgets(sa, sb, "energy_kwh"); cmp = time.perf_counter() - t0
from lightning_greenai.stats.gain import GainRule
rule = GainRule.parse({{"gain_per_kwh": 1.0}})
scores = sa.scores()
rule.verdict(scores[:-1], {{"energy_kwh": 1e-6}}, bounds=(0, 1), direction="max")  # the previous batch's n
t0 = time.perf_counter()
rule.verdict(scores, {{"energy_kwh": 1e-6}}, bounds=(0, 1), direction="max")
gain = time.perf_counter() - t0
print(f"{{n}} {{cold:.3f}} {{warm:.3f}} {{cmp:.3f}} {{gain * 1e3:.2f}} {{sa.method_of_bands}} {{extra:.3f}}")
"""


def main() -> None:
    root = str(Path(__file__).resolve().parents[1])
    print(
        "| trials | band | evp() cold | evp() warm | compare (200 budgets) | stop_when per batch | extrapolation "
        "| evp() cold + extrapolation |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in (10, 40, 41, 100, 1000):
        with tempfile.TemporaryDirectory() as folder:
            out = subprocess.run(
                [sys.executable, "-c", CHILD.format(root=root), str(n), folder],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
        trials, cold, warm, compare, gain, method, extra = out
        print(
            f"| {trials} | {method} | {float(cold):.3f} s | {float(warm):.3f} s | {float(compare):.3f} s "
            f"| {float(gain):.2f} ms | {float(extra):.3f} s | {float(cold) + float(extra):.3f} s |"
        )
        time.sleep(0.1)
    coverage()


def coverage(repetitions: int = 100) -> None:
    """How often the extrapolation's interval covers the true expected best of 2N and 5N trials."""
    import numpy as np
    from opda.parametric import NoisyQuadraticDistribution, QuadraticDistribution

    from lightning_greenai.stats.extrapolate import extrapolate

    truths = {
        "quadratic, c=4": QuadraticDistribution(0.5, 0.95, 4, convex=False),
        "quadratic, c=10": QuadraticDistribution(0.5, 0.95, 10, convex=False),
        "quadratic, c=1": QuadraticDistribution(0.5, 0.95, 1, convex=False),
        "noisy quadratic, c=4, sd 0.01": NoisyQuadraticDistribution(0.5, 0.95, 4, 0.01, convex=False),
    }
    print()
    print("| scores | trials N | covers at 2N | covers at 5N | median error at 5N | median width at 5N |")
    print("|---|---|---|---|---|---|")
    for name, truth in truths.items():
        for n in (10, 20, 40, 200, 1000):
            ns = [2 * n, 5 * n]
            true_curve = np.array([truth.average_tuning_curve(k) for k in ns])
            covered, errors, widths = np.zeros(2), [], []
            for rep in range(repetitions):
                fit = extrapolate(truth.sample(n, generator=np.random.default_rng(rep)), ns, bounds=(0.0, 1.0))
                assert fit is not None
                lo, hi = np.array(fit.lo), np.array(fit.hi)
                covered += (lo <= true_curve) & (true_curve <= hi)
                errors.append(fit.expected[1] - true_curve[1])
                widths.append(hi[1] - lo[1])
            print(
                f"| {name} | {n} | {covered[0] / repetitions:.2f} | {covered[1] / repetitions:.2f} "
                f"| {np.median(errors):+.4f} | {np.median(widths):.4f} |"
            )


if __name__ == "__main__":
    main()
