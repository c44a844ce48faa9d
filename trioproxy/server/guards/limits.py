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
