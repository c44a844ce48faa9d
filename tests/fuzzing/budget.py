"""How many cases a fuzz run gets, and whether it is reproducible.

CI (the default) runs a fixed number of examples, derandomized and with no
example database: every run sends the same cases, so a red run is a change in
the proxy, never a luckier draw, and its failure can be replayed by rerunning
the test. Coverage beyond that fixed set comes from the long mode
(``python -m benchmarks.fuzz``), which sets ``TRIOPROXY_FUZZ_EXAMPLES``, a
fresh ``TRIOPROXY_FUZZ_SEED`` per round, ``TRIOPROXY_FUZZ_SHRINK=1`` and
``TRIOPROXY_FUZZ_EXPLICIT=0``, and
keeps the output of any failing round.
"""

import os

from hypothesis import HealthCheck, Phase, settings

__all__ = ["CI_EXAMPLES", "fuzz_settings", "seed"]

CI_EXAMPLES = {"h1": 120, "h2": 100, "upstream": 50}
"""Generated examples per family in CI, after the explicit ones of ``known``: about
35 s together for a proxy that keeps the rule (80 ms a request case, 50 ms a frame
sequence, 250 ms an upstream answer on a loaded 2-core machine). While an explicit
example fails, hypothesis generates none: a proxy with known faults fails fast."""


PHASES = (Phase.explicit, Phase.generate, Phase.target)
"""No shrinking unless asked: a case that stalls the proxy costs seconds, and
shrinking one tries hundreds; CI prints the failing case as found."""


def _phases() -> tuple[Phase, ...]:
    # The long mode skips the explicit examples (CI runs them every time) so that,
    # while one still fails, its rounds go on generating.
    explicit = os.environ.get("TRIOPROXY_FUZZ_EXPLICIT", "1") == "1"
    shrink = bool(os.environ.get("TRIOPROXY_FUZZ_SHRINK"))
    return tuple(p for p in PHASES if explicit or p != Phase.explicit) + (
        (Phase.shrink,) if shrink else ()
    )


def seed() -> int | None:
    """The long mode's seed, or None: CI then derandomizes."""
    raw = os.environ.get("TRIOPROXY_FUZZ_SEED")
    return int(raw) if raw else None


def fuzz_settings(family: str) -> settings:
    examples = int(os.environ.get("TRIOPROXY_FUZZ_EXAMPLES", CI_EXAMPLES[family]))
    return settings(
        max_examples=examples,
        deadline=None,  # a live process: time per case is bounded by trio, not here
        derandomize=seed() is None,
        database=None,
        phases=_phases(),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        report_multiple_bugs=True,
        print_blob=True,
    )
