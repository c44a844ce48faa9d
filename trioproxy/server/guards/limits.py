"""The per-server limits the guards enforce, carried on hypercorn's ``Config``."""

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULTS", "ServerLimits", "limits_of"]


@dataclass(frozen=True, slots=True)
class ServerLimits:
    h2_stream_buffer_bytes: int = 64 * 1024
    """Response bytes one HTTP/2 stream may hold that its client has not taken
    (flow-control window closed); past it the relay's ``send()`` waits, and the
    relay stops reading its upstream."""
    h2_max_resets_per_s: int = 200
    """Stream resets one HTTP/2 connection may send in a second before it is
    closed with GOAWAY(ENHANCE_YOUR_CALM)."""
    # The frame budgets below work the same way (``guards/frames.py``); each
    # default is far above what a browser, curl or an h2 library sends.
    h2_max_priority_per_s: int = 100
    """PRIORITY frames a second (priorities are ignored; a browser that sends
    them at all sends a handful when it connects)."""
    h2_max_window_updates_per_s: int = 1000
    """WINDOW_UPDATE frames a second, plus ``WINDOW_UPDATES_PER_DATA_FRAME`` (4)
    for each DATA frame sent on the connection in that second: a client that
    downloads fast returns credit for what it got, as often as it reads."""
    h2_max_settings_per_s: int = 100
    """SETTINGS frames a second (acknowledgements included; clients send two
    when they connect)."""
    h2_max_pings_per_s: int = 100
    """PING frames a second (keep-alive and round-trip probes)."""
    h2_max_empty_data_per_s: int = 100
    """DATA frames with no data and no END_STREAM, a second."""
    h2_max_continuations_per_s: int = 500
    """CONTINUATION frames a second (a header block over 16 KiB needs at most
    four under the 64 KiB header list bound)."""
    h2_max_other_frames_per_s: int = 100
    """Frames of the kinds h2 reads and ignores, a second: GOAWAY, ALTSVC and
    frame types it does not know (PRIORITY_UPDATE, extensions). Each costs a
    parse and nothing else, so none is needed at a rate."""
    send_stall_s: float = 60.0
    """A client that takes no byte of an answer for this long is cut off (its
    request ends as a client's stop, its upstream closed)."""


DEFAULTS = ServerLimits()

_ATTRIBUTE = "trioproxy_limits"


def attach(config: Any, limits: ServerLimits) -> None:
    setattr(config, _ATTRIBUTE, limits)


def limits_of(config: Any) -> ServerLimits:
    limits: ServerLimits = getattr(config, _ATTRIBUTE, DEFAULTS)
    return limits
