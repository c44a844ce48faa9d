"""Guards against two hypercorn 0.18 bugs a client can trigger.

Both are patched at the narrowest point that fixes them, once per process, by
:func:`install`. Each has a regression test in ``tests/test_guards.py``.

1. HTTP/2: a DATA frame for a stream hypercorn already closed (a POST
   answered before its body finished: a 413, a 404) raises ``KeyError`` in
   ``H2Protocol._handle_events`` and kills the connection's task group, and
   with it every sibling stream (hypercorn issue #329). The guard drops such
   DATA, returning its flow-control credit so the connection window stays open.

2. HTTP/1.1: bytes that arrive after a complete request (pipelining, or a
   keep-alive client whose next request races the end of the last response)
   make h11 answer ``PAUSED``, and hypercorn then blocks its read loop until
   the response ends. While it is blocked a FIN or RST goes unseen: the
   request is never told the client left, and the task and socket leak for
   good. The guard tells hypercorn ``NEED_DATA`` instead, so the read loop
   keeps reading (and sees the client leave); the early bytes wait in h11's
   buffer, bounded by ``h11_max_incomplete_size``, and are served as soon as
   the response in flight has ended.
"""

import contextlib
from typing import Any

import h2.events
import h2.exceptions
import h11
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol

__all__ = ["install"]

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    _guard_h2_data_after_close()
    _guard_h11_pipelining()


def _guard_h2_data_after_close() -> None:
    handle_events = H2Protocol._handle_events

    async def _handle_events(self: Any, events: list[h2.events.Event]) -> None:
        known: list[h2.events.Event] = []
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                # Streams are created while events are handled: a stream
                # opened in this batch must exist before its DATA is checked.
                await handle_events(self, [*known, event])
                known = []
                continue
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.connection.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                continue
            known.append(event)
        await handle_events(self, known)

    setattr(H2Protocol, "_handle_events", _handle_events)  # noqa: B010 (mypy: method-assign)


class _UnpausedConnection(h11.Connection):
    """An h11 connection that never pauses hypercorn's read loop on pipelined bytes."""

    def __init__(self, max_pipelined_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_pipelined_bytes)
        self._max_pipelined_bytes = max_pipelined_bytes

    def next_event(self) -> Any:
        event = super().next_event()
        if event is h11.PAUSED and self.their_state is h11.DONE:
            if len(self.trailing_data[0]) > self._max_pipelined_bytes:
                raise h11.RemoteProtocolError("too many pipelined bytes", error_status_hint=400)
            return h11.NEED_DATA
        return event


def _guard_h11_pipelining() -> None:
    init = H11Protocol.__init__
    maybe_recycle = H11Protocol._maybe_recycle

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.connection = _UnpausedConnection(self.config.h11_max_incomplete_size)

    async def _maybe_recycle(self: Any) -> None:
        await maybe_recycle(self)
        connection = self.connection
        if (
            connection.our_state is h11.IDLE
            and connection.their_state is h11.IDLE
            and connection.trailing_data[0]
        ):
            # Hypercorn would have resumed its paused read loop here; the
            # guard never paused it, so the waiting request is served now.
            await self._handle_events()

    setattr(H11Protocol, "__init__", __init__)  # noqa: B010
    setattr(H11Protocol, "_maybe_recycle", _maybe_recycle)  # noqa: B010
