"""Run every benchmark, then write the report: ``python -m benchmarks.run_all``.

Each also runs alone: ``python -m benchmarks.cancellation``, ``.overhead``,
``.scale``, ``.soak``; ``python -m benchmarks.report`` rewrites docs/benchmarks.md and
its charts from benchmarks/results/*.json.
"""

import subprocess
import sys

STEPS = (
    "benchmarks.cancellation",
    "benchmarks.overhead",
    "benchmarks.scale",
    "benchmarks.soak",
    "benchmarks.report",
)

if __name__ == "__main__":
    for step in STEPS:
        print(f"### {step}", flush=True)
        subprocess.run([sys.executable, "-m", step, *sys.argv[1:2]], check=True)
