"""Guards for hypercorn 0.18 (and its h11 and h2): faults a client can trigger,
and per-request and per-write costs measured on the hot path.

Each is a method of one of the server's subclasses of hypercorn's classes
(:mod:`trioproxy.server.tcp`, :class:`.http1.GuardedH11Protocol`,
:class:`.http2.GuardedH2Protocol`) or a piece they call; hypercorn's own
classes are never changed. Each has a regression test on real sockets
(``tests/test_guards.py``, ``tests/test_abuse.py``).

- :mod:`.connection`: no exception in one connection's task ends the server
  (the class of fault, whatever the next hypercorn bug of this kind is); a
  connection's close is never cut short by the cancel of the request that
  asked for it; accept errors at the fd limit log once in a while, not every
  0.1 s.
- :mod:`.idle`: the keep-alive idle timer re-armed by moving one deadline,
  not by starting a task twice per request.
- :mod:`.fastwrite`: a write to a plain TCP client goes straight to the
  socket when no other write is under way (no lock, no cancel scope).
- :mod:`.gone`: a client's leaving closes its upstream in the read task's
  own step, not a trio batch later in the relay's watcher.
- :mod:`.hangup`: a client's hang-up (FIN or reset) acted on from a watcher
  thread, without waiting for the event loop's batch to end.
- :mod:`.http1`: strict HTTP/1.1 framing (no request smuggling), pipelined
  bytes never blind hypercorn's read loop to a client leaving; an h2c or
  WebSocket ``Upgrade`` is ignored (answered over HTTP/1.1); the connection
  is read and written by hand (:mod:`.h1_connection`, :mod:`.h1_read`,
  :mod:`.h1_write`), with h11's states, events and bytes.
- :mod:`.http2`: bad pseudo-headers reset the stream instead of ending the
  process; DATA for a closed stream no longer kills the connection; a client
  that does not read stalls its stream's sender (flow control end to end);
  a stream reset in the same read as its request never starts at all;
  priority signals are ignored (no tree built for streams never opened);
  hpack's and h2's loggers print nothing, so no header value is logged.
- :mod:`.frames`: every kind of HTTP/2 frame that carries no request
  (RST_STREAM, PRIORITY, WINDOW_UPDATE, SETTINGS, PING, empty DATA,
  CONTINUATION) has a budget per connection and per second; past one, the
  connection ends with GOAWAY(ENHANCE_YOUR_CALM).

Per-server limits are read from hypercorn's ``Config`` (see
:func:`trioproxy.server.hypercorn_config`), falling back to the defaults in
:data:`DEFAULTS`.
"""

from trioproxy.server.guards.limits import DEFAULTS, ServerLimits

__all__ = ["DEFAULTS", "ServerLimits"]
