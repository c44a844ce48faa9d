"""The server: hypercorn's trio worker behind guards against its faults and costs.

It serves any ASGI app and knows nothing of proxying: the proxy
(:mod:`trioproxy.proxy`) and the simulated upstream (:mod:`trioproxy.sim`)
both run on it.
"""

from trioproxy.server.guards.limits import DEFAULTS, ServerLimits
from trioproxy.server.serve import hypercorn_config, serve_app

__all__ = ["DEFAULTS", "ServerLimits", "hypercorn_config", "serve_app"]
