"""What start-up says before serving: warnings about unsafe settings, and the
one line for a port that cannot be bound.

An operator reads these once, at start: each says what is unsafe or wrong
and what to change, in one line, never a traceback.
"""

import errno
import ipaddress
import logging
import traceback
from typing import Any

from trioproxy.proxy.gateway.options import OPTIONS
from trioproxy.proxy.gateway.settings import ServerSettings

__all__ = ["bind_error", "reachable", "warn_of_keys_given", "warn_of_open_relay"]

log = logging.getLogger("trioproxy")


def warn_of_keys_given(given: dict[str, Any]) -> None:
    """One line for every key on the command line: any local user reads it there."""
    named = [opt for opt in OPTIONS if opt.secret and given.get(opt.name)]
    if not named:
        return
    instead = [f"{opt.option} as ${opt.variable}" for opt in named]
    log.warning(
        "%s on the command line can be read by any local user (/proc/PID/cmdline): give %s "
        "or in the --config file instead",
        ", ".join(opt.option for opt in named),
        ", ".join(instead),
    )


def reachable(host: str) -> bool:
    """Whether ``host`` listens beyond this machine (anything but loopback)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return True


def warn_of_open_relay(settings: ServerSettings) -> None:
    """An upstream key held for any client that reaches a non-loopback address."""
    proxy = settings.proxy
    keyed = [u.name for u in proxy.router().upstreams if u.key] if proxy.upstream else []
    if keyed and not proxy.api_keys and not proxy.client_keys and reachable(settings.host):
        log.warning(
            "open relay: the key of upstream %s is sent for ANY client that reaches %s:%d, "
            "since no client key is set (--api-key, $TRIOPROXY_API_KEYS or [[key]] tables); "
            "set one, or listen on 127.0.0.1",
            ", ".join(f'"{name}"' for name in keyed),
            settings.host,
            settings.port,
        )


_BIND_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def bind_error(exc: BaseException) -> OSError | None:
    """The error of binding the listening socket, if that is what ended ``exc``
    (alone or in trio's groups): the operator's to fix, said in one line."""
    if isinstance(exc, BaseExceptionGroup):
        causes = [bind_error(e) for e in exc.exceptions]
        return next((c for c in causes if c is not None), None)
    if not isinstance(exc, OSError) or exc.errno not in _BIND_ERRNOS:
        return None
    frames = [frame.f_code.co_name for frame, _ in traceback.walk_tb(exc.__traceback__)]
    return exc if {"create_server", "create_sockets", "bind"} & set(frames) else None
