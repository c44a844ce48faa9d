"""Balancing a request among replicas: fewest in flight first, failing ones skipped a while.

Replicas are upstreams with the same model list (:meth:`Router.replicas`).
A request goes to the replica with the fewest requests in flight; since a
client's stop closes its upstream exchange at once, the counts stay true
under stops, and a user who stops and asks again is balanced on what really
runs. A replica whose connection fails is skipped for ``cooldown_s``, with a
WARNING line; the first request that reaches it again logs that it is back.
When every replica is cooling down, they are tried anyway.

With several workers, the counts are the whole server's (a
:class:`~trioproxy.proxy.core.tally.Tally` per upstream, found by its name);
cool-downs are each worker's own. A reload's balancer takes over the one
before it (``after``): an upstream that stays keeps its count and its
cool-down, and a request that started before the reload ends on the count
it started on.
"""

import logging
from collections.abc import Sequence

import trio
from prometheus_client import Gauge

from trioproxy.proxy.core.tally import Tally, tally_name
from trioproxy.proxy.upstream.routing import Upstream

__all__ = ["Balancer"]

log = logging.getLogger("trioproxy.balance")


class Balancer:
    """Counts each upstream's requests in flight (also for the metrics' gauge)."""

    def __init__(
        self,
        cooldown_s: float,
        gauge: Gauge,
        upstreams: Sequence[Upstream],
        run_dir: str | None = None,
        *,
        after: "Balancer | None" = None,
    ) -> None:
        """``after``: the balancer of the settings a reload replaces (its counts and
        cool-downs go on, and are kept for upstreams that went)."""
        self._cooldown_s = cooldown_s
        self._gauges = {u.name: gauge.labels(u.name) for u in upstreams}
        self._rows: dict[str, memoryview] = after._rows if after is not None else {}
        self._tallies: dict[str, Tally] = after._tallies if after is not None else {}
        self._down_until: dict[str, float] = after._down_until if after is not None else {}
        for upstream in upstreams:
            if upstream.name not in self._tallies:
                tally = Tally(tally_name("upstream", upstream.name), 1, run_dir)
                self._tallies[upstream.name], self._rows[upstream.name] = tally, tally.row

    def inflight(self, upstream: Upstream) -> int:
        """Requests in flight to ``upstream``, in every worker."""
        return self._tallies[upstream.name].total(0)

    def order(self, replicas: Sequence[Upstream]) -> list[Upstream]:
        """The replicas to try, best first: ready ones by fewest in flight, then the rest."""
        if len(replicas) == 1:
            return list(replicas)
        now = trio.current_time()
        ready = [u for u in replicas if self._down_until.get(u.name, 0.0) <= now]
        cooling = [u for u in replicas if u not in ready]
        ready.sort(key=self.inflight)  # stable: configured order breaks ties
        return ready + cooling

    def started(self, upstream: Upstream) -> None:
        self._rows[upstream.name][0] += 1
        self._gauges[upstream.name].inc()

    def finished(self, upstream: Upstream) -> None:
        self._rows[upstream.name][0] -= 1
        self._gauges[upstream.name].dec()

    def unreachable(self, upstream: Upstream, reason: str) -> None:
        if self._down_until.get(upstream.name, 0.0) <= trio.current_time():
            log.warning(
                "upstream %s unreachable (%s): skipped for %g s",
                upstream.name,
                reason,
                self._cooldown_s,
            )
        self._down_until[upstream.name] = trio.current_time() + self._cooldown_s

    def reached(self, upstream: Upstream) -> None:
        if self._down_until.pop(upstream.name, None) is not None:
            log.info("upstream %s reachable again", upstream.name)
