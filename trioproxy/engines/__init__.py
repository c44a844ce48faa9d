"""Real model servers to test and measure against: where the project's install
script (``scripts/engines/install.sh``) left them (:mod:`.cache`), running one
on loopback with the tiny model (:mod:`.process`), and what it says about its
own work, read from its metrics and log (:mod:`.counters`).

The judge of a stop is the engine itself: the tokens it counted and the
aborts it logged, never what the proxy says it did."""

from trioproxy.engines.cache import ENGINES, Installed, engines_root, find_installed
from trioproxy.engines.counters import Counters, metric_sum, read_counters
from trioproxy.engines.process import Engine, running_engine

__all__ = [
    "ENGINES",
    "Counters",
    "Engine",
    "Installed",
    "engines_root",
    "find_installed",
    "metric_sum",
    "read_counters",
    "running_engine",
]
