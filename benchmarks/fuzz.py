"""The fuzzer's long mode: rounds of ``tests/test_fuzz.py``, each with a fresh seed.

Run: ``python -m benchmarks.fuzz [--minutes M] [--examples N] [--family h1|h2|upstream]``.

CI runs a fixed, derandomized set of cases (``tests/fuzzing/budget.py``);
this runs ``--examples`` cases a family per round, with a new random seed a
round, shrinking on and the explicit examples off (CI runs those), until
``--minutes`` have passed. A failing round's output (the shrunk case,
hypothesis's reproduce blob, the seed) is kept in a file, and the seed reruns
it: ``TRIOPROXY_FUZZ_SEED=S TRIOPROXY_FUZZ_EXAMPLES=N TRIOPROXY_FUZZ_SHRINK=1
TRIOPROXY_FUZZ_EXPLICIT=0 pytest tests/test_fuzz.py``. It is not part of
``run_all``: it checks rules, it measures nothing for the report.
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

TESTS = {
    "h1": "test_http1_requests_keep_the_rule",
    "h2": "test_http2_frame_sequences_keep_the_rule",
    "upstream": "test_upstream_answers_keep_the_rule",
}


def _round(seed: int, examples: int, family: str | None) -> tuple[bool, str]:
    env = os.environ | {
        "TRIOPROXY_FUZZ_SEED": str(seed),
        "TRIOPROXY_FUZZ_EXAMPLES": str(examples),
        "TRIOPROXY_FUZZ_SHRINK": "1",
        "TRIOPROXY_FUZZ_EXPLICIT": "0",  # CI runs issue 18's probes; these rounds generate
    }
    select = ["-k", TESTS[family]] if family else []
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *select]
    done = subprocess.run(
        [*argv, "tests/test_fuzz.py"], env=env, capture_output=True, text=True, check=False
    )
    return done.returncode == 0, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--examples", type=int, default=300, help="per family and round")
    parser.add_argument("--family", choices=sorted(TESTS), help="one family only")
    args = parser.parse_args()
    end = time.monotonic() + args.minutes * 60
    failed: list[tuple[int, str]] = []
    rounds = 0
    while time.monotonic() < end:
        seed = random.randrange(2**32)
        passed, output = _round(seed, args.examples, args.family)
        rounds += 1
        if not passed:
            with tempfile.NamedTemporaryFile(
                "w", prefix=f"fuzz-{seed}-", suffix=".txt", delete=False
            ) as kept:
                kept.write(output)
            failed.append((seed, kept.name))
        print(f"round {rounds} seed {seed}: {'passed' if passed else 'FAILED'}", flush=True)
    for seed, where in failed:
        print(f"seed {seed} failed: {where}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
