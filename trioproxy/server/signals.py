"""The signals a server process answers, as operators know them from nginx.

=================  ===========================================================
SIGTERM, SIGINT    stop: no new connection; requests in flight have the grace
                   period, then what is left is cut
the second one     stop now: what is left is cut at once
SIGQUIT            stop now, first or after a SIGTERM
SIGHUP             reload the settings file (whoever waits in
                   :meth:`Signals.wait_reload`; none: it is ignored)
=================  ===========================================================

They are caught from the moment :class:`Signals` is made, before the server
listens: a signal that comes early is never the default, abrupt exit (SIGHUP's
default would end the process, and a second SIGTERM's did).
"""

import contextlib
import logging
import math
import signal

import trio

__all__ = ["Signals"]

log = logging.getLogger("trioproxy")

_STOP = (signal.SIGINT, signal.SIGTERM)


class Signals:
    """The server's signals, turned into triggers; :meth:`run` reads them."""

    def __init__(self, grace_period_s: float = math.inf) -> None:
        self._grace_period_s = grace_period_s
        self._signals = trio.open_signal_receiver(*_STOP, signal.SIGQUIT, signal.SIGHUP)
        self._receiver = self._signals.__enter__()
        self._stop, self._now = trio.Event(), trio.Event()
        self._reload_in, self._reloads = trio.open_memory_channel[str](1)

    async def run(self) -> None:
        """Turn signals into triggers until cancelled; then they are the default again."""
        try:
            async for signum in self._receiver:
                self._received(signal.Signals(signum))
        finally:
            self._signals.__exit__(None, None, None)

    def _received(self, sig: signal.Signals) -> None:
        if sig is signal.SIGHUP:
            # A reload already on its way reads the file as it is now: one is enough.
            with contextlib.suppress(trio.WouldBlock):
                self._reload_in.send_nowait(sig.name)
        elif sig is signal.SIGQUIT or self._stop.is_set():
            if not self._now.is_set():
                log.warning("%s: stopping now: requests in flight are cut", sig.name)
            self._stop.set()
            self._now.set()
        else:
            log.info(
                "%s: shutting down; requests in flight have %g s (a second %s or SIGQUIT "
                "cuts them now)",
                sig.name,
                self._grace_period_s,
                sig.name,
            )
            self._stop.set()

    async def wait_stop(self) -> None:
        await self._stop.wait()

    async def wait_stop_now(self) -> None:
        await self._now.wait()

    async def wait_reload(self) -> str:
        """Until SIGHUP; its name, for the reload's log line."""
        return await self._reloads.receive()
