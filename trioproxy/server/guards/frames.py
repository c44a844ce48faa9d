"""HTTP/2 frame budgets: how many frames of each kind that asks work of the
server, but carries no request, one connection may send in a second.

A PRIORITY, WINDOW_UPDATE, SETTINGS or PING frame, an empty DATA frame, a
CONTINUATION, or a frame h2 reads and ignores (GOAWAY, ALTSVC, a type it does
not know, such as PRIORITY_UPDATE) costs h2 and hypercorn a few microseconds, and a client can send
a million of them in a few seconds at 13 bytes each, while every other client
on the process waits. RST_STREAM is counted the same way ("rapid reset"). Every kind of frame
has a budget, then: HEADERS open streams (bounded by the streams' own limit)
and DATA with data is bounded by flow control.

Each kind has a budget per connection and per second
(``ServerLimits.h2_max_*_per_s``). Frames are counted where h2 parses them,
one at a time (:class:`BudgetedFrameBuffer`), so a read full of them is cut
at the frame that overspends: h2 never parses the rest, and hypercorn acts
on no frame of that read. The overspending frame raises :class:`OverBudget`, a
``ProtocolError``: h2 answers it with GOAWAY carrying its error code,
ENHANCE_YOUR_CALM, and hypercorn closes the connection.

WINDOW_UPDATE is the one kind a legitimate client may send at a high rate: a
fast download returns flow-control credit as often as the client reads. Its
budget is a fixed allowance plus :data:`WINDOW_UPDATES_PER_DATA_FRAME` for
each DATA frame the server sent in the same second (what was not used
carries over to the next second, once), so it grows with what the client was
given, never with what the client sends.
"""

import logging
import math

import h2.errors
import h2.exceptions
import trio
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import (
    AltSvcFrame,
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from trioproxy.server.guards.limits import ServerLimits

__all__ = ["WINDOW_UPDATES_PER_DATA_FRAME", "BudgetedFrameBuffer", "FrameBudget", "OverBudget"]

log = logging.getLogger("trioproxy.server")

WINDOW_UPDATES_PER_DATA_FRAME = 4
"""A client may return credit for one DATA frame on the stream and on the
connection, and a reader that takes a frame in pieces may do so per piece."""

_KINDS: dict[type[Frame], str] = {
    PriorityFrame: "PRIORITY",
    WindowUpdateFrame: "WINDOW_UPDATE",
    SettingsFrame: "SETTINGS",
    PingFrame: "PING",
    RstStreamFrame: "RST_STREAM",
    ContinuationFrame: "CONTINUATION",
}
_EMPTY_DATA = "empty DATA"
_OTHER = "GOAWAY, ALTSVC or unknown-type"
for _ignored in (GoAwayFrame, AltSvcFrame, ExtensionFrame):  # read, then ignored by h2
    _KINDS[_ignored] = _OTHER


def _kind_of(frame: Frame) -> str | None:
    """The budget a received frame spends from, or None for one that is not budgeted."""
    if type(frame) is DataFrame:
        # Padding carries no data either: a padded empty frame is as empty.
        empty = not frame.data and "END_STREAM" not in frame.flags
        return _EMPTY_DATA if empty else None
    return _KINDS.get(type(frame))


class OverBudget(h2.exceptions.ProtocolError):
    """The client sent more frames of one kind in a second than its budget
    allows: the client's fault, and its connection ends."""

    error_code = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


class FrameBudget:
    """Frames of each budgeted kind one connection sent in the current one-second window."""

    __slots__ = ("_earned", "_limits", "_spent", "_window")

    def __init__(self, limits: ServerLimits) -> None:
        self._limits = {
            "PRIORITY": limits.h2_max_priority_per_s,
            "WINDOW_UPDATE": limits.h2_max_window_updates_per_s,
            "SETTINGS": limits.h2_max_settings_per_s,
            "PING": limits.h2_max_pings_per_s,
            "RST_STREAM": limits.h2_max_resets_per_s,
            "CONTINUATION": limits.h2_max_continuations_per_s,
            _EMPTY_DATA: limits.h2_max_empty_data_per_s,
            _OTHER: limits.h2_max_other_frames_per_s,
        }
        self._spent = dict.fromkeys(self._limits, 0)
        self._earned = 0  # WINDOW_UPDATE credit earned by DATA frames sent in this window
        self._window = -math.inf

    def _roll(self) -> None:
        now = trio.current_time()
        if now - self._window < 1.0:
            return
        # The answers to DATA frames sent late in one window come early in
        # the next: credit earned in the last window and not used carries
        # over, once (so it never piles up over a long download).
        carried = min(self._earned, max(0, -self._spent["WINDOW_UPDATE"]))
        self._window = now
        for kind in self._spent:
            self._spent[kind] = 0
        self._spent["WINDOW_UPDATE"] = -carried
        self._earned = 0

    def spend(self, kind: str) -> bool:
        """Count one frame of ``kind``; False once the window's budget for it is spent."""
        self._roll()
        self._spent[kind] += 1
        return self._spent[kind] <= self._limits[kind]

    def data_frame_sent(self) -> None:
        """One DATA frame went to the client: it may return the credit."""
        self._roll()
        self._spent["WINDOW_UPDATE"] -= WINDOW_UPDATES_PER_DATA_FRAME
        self._earned += WINDOW_UPDATES_PER_DATA_FRAME

    def limit(self, kind: str) -> int:
        return self._limits[kind]


class BudgetedFrameBuffer(FrameBuffer):
    """h2's server-side frame parser, spending each frame from ``budget`` as it is parsed."""

    def __init__(self, budget: FrameBudget, client: object) -> None:
        super().__init__(server=True)
        self.budget = budget
        self._client = client

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        # h2 passes each frame through here as it is parsed, CONTINUATIONs
        # included, before acting on it: the narrowest point that sees all.
        kind = None if f is None else _kind_of(f)
        if kind is not None and not self.budget.spend(kind):
            limit = self.budget.limit(kind)
            log.warning(
                "HTTP/2 connection from %s closed: over %d %s frames a second",
                self._client,
                limit,
                kind,
            )
            raise OverBudget(f"over {limit} {kind} frames a second")
        return super()._update_header_buffer(f)
