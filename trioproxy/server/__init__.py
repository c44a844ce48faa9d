"""The server: hypercorn's trio worker built from its parts, with guards against
its faults and costs as methods of its subclassed classes.

It serves any ASGI app and knows nothing of proxying: the proxy
(:mod:`trioproxy.proxy`) and the simulated upstream (:mod:`trioproxy.sim`)
both run on it. Nothing of hypercorn, h11 or h2 is changed in the process.
"""

from trioproxy.server.guards.limits import DEFAULTS, ServerLimits
from trioproxy.server.serve import hypercorn_config, serve_app, serve_plain
from trioproxy.server.signals import Signals
from trioproxy.server.versions import IncompatibleVersions, check_versions

__all__ = [
    "DEFAULTS",
    "IncompatibleVersions",
    "ServerLimits",
    "Signals",
    "check_versions",
    "hypercorn_config",
    "serve_app",
    "serve_plain",
]
