"""The settings requests are served on: one snapshot, swapped whole by a reload.

A request takes the current :class:`Snapshot` once, as it arrives, and is
served on it to its end: its keys, limits, upstreams, timeouts and CORS are
those it started with, whatever a reload does meanwhile. A reload builds the
next snapshot beside the one in use and swaps it in one assignment; if the
file does not load, or the snapshot cannot be built, the one in use stays and
the log says why. What counts across requests (a key's requests in flight and
its window, an upstream's load) is taken over by the next snapshot's limiter
and balancer, so a reload neither resets a limit nor leaks a slot.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from trioproxy.asgi import ASGIApp
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.gateway.keys import KeyLimiter
from trioproxy.proxy.gateway.reload import NoSettingsFile, Reloaded, SettingsFile, describe
from trioproxy.proxy.gateway.settings import SettingsError
from trioproxy.proxy.upstream.balance import Balancer

__all__ = ["Build", "Live", "Snapshot"]

log = logging.getLogger("trioproxy")


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: ProxyConfig
    api: ASGIApp
    """``/v1/``: CORS, the client keys and their limits, the relay."""
    public: ASGIApp
    """Health and every other route outside the operator's, under CORS."""
    admin_keys: frozenset[bytes]
    metrics_keys: frozenset[bytes]
    """Keys that open ``/metrics``; empty: it is open."""
    balancer: Balancer
    limiter: KeyLimiter


type Build = Callable[[ProxyConfig, Snapshot | None], Snapshot]
"""A snapshot for these settings, taking over the counts of the one before (if any).
Raises :class:`SettingsError` or ``OSError`` for settings it cannot serve."""


class Live:
    """The current snapshot, and the reload that replaces it."""

    def __init__(
        self, config: ProxyConfig, build: Build, settings_file: SettingsFile | None = None
    ) -> None:
        self._build = build
        self._file = settings_file
        self.current = build(config, None)

    @property
    def reloadable(self) -> bool:
        """Whether there is a settings file to read again."""
        return self._file is not None and self._file.path is not None

    def reload(self, why: str) -> Reloaded:
        """Read the settings file again and serve new requests on it; ``why`` (the
        signal, the admin's call) begins the one log line this writes."""
        where = self._file.path if self._file is not None else None
        try:
            if self._file is None:
                raise NoSettingsFile("no settings file to reload: the server was built without")
            change = self._file.read()
            new = self._build(change.proxy, self.current)
        except NoSettingsFile as exc:
            log.warning("%s: %s; nothing changed", why, exc)
            return Reloaded(False, str(exc))
        except SettingsError as exc:
            log.warning("%s: settings not reloaded, the ones in use stay: %s", why, exc)
            return Reloaded(False, str(exc))
        except OSError as exc:  # a count's file in the run directory, say
            message = f"{where}: cannot serve it: {exc.strerror or exc}"
            log.warning("%s: settings not reloaded, the ones in use stay: %s", why, message)
            return Reloaded(False, message)
        old, self.current = self.current, new
        message = describe(old.config, new.config)
        if change.needs_restart:
            message += f"; needs a restart to apply: {', '.join(change.needs_restart)}"
        log.info("%s: settings reloaded from %s: %s", why, where, message)
        return Reloaded(True, message, change.needs_restart)
