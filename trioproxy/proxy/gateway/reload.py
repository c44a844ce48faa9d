"""Reading the settings file again, as start-up read it, for a reload (SIGHUP or
``POST /admin/reload``).

Only the file is read anew: the command line's options (a worker's, from its
parent's sealed memory file) and the variables stay what they were at start,
so an option given on the command line keeps winning over the file, as it did.
What a reload cannot change in a running server (where it listens, its
certificate, its workers, the HTTP/2 budgets...) is named in its log line as
needing a restart, never silently ignored.
"""

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.gateway.options import CONFIG
from trioproxy.proxy.gateway.settings import ServerSettings, SettingsError, load
from trioproxy.proxy.gateway.startup import warn_of_open_relay
from trioproxy.server.guards import ServerLimits

__all__ = ["Change", "NoSettingsFile", "Reloaded", "SettingsFile", "describe"]

# The server's settings a running server keeps, by the file key that names each.
_RESTART = {
    "host": "server.host",
    "port": "server.port",
    "certfile": "server.certfile",
    "keyfile": "server.keyfile",
    "workers": "server.workers",
    "grace_period_s": "server.grace_period_s",
    "keep_alive_s": "server.keep_alive_s",
    "log_format": "server.log_format",
}
_LIMIT_KEYS = {"h2_stream_buffer_bytes": "limits.h2_stream_buffer_kib"}


class NoSettingsFile(SettingsError):
    """The server started without a settings file: there is nothing to reload."""


@dataclass(frozen=True, slots=True)
class Change:
    proxy: ProxyConfig
    """What requests will be served on from now on."""
    needs_restart: tuple[str, ...]
    """File keys whose new values only a restart applies."""


@dataclass(frozen=True, slots=True)
class Reloaded:
    """One process's reload: done, or why not."""

    ok: bool
    message: str
    """What changed, in short, or why the settings in use stay."""
    needs_restart: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "reloaded": self.ok,
            "message": self.message,
            "needs_restart": list(self.needs_restart),
        }


class SettingsFile:
    """The file start-up read (``--config`` or its variable), and how to read it again."""

    def __init__(
        self,
        given: dict[str, Any],
        started: ServerSettings,
        prepare: Callable[[ProxyConfig], ProxyConfig] | None = None,
    ) -> None:
        """``given``: the command line's options, as start-up had them. ``prepare``:
        what start-up did to the file's settings before serving them (it raises
        :class:`SettingsError` for settings it cannot serve without a restart)."""
        self._given = dict(given)
        self._started = started
        self._prepare = prepare or (lambda proxy: proxy)
        self.path: str | None = given.get(CONFIG.name) or os.environ.get(str(CONFIG.variable))

    def read(self) -> Change:
        """The settings the file says now; :class:`SettingsError` (one line) if it
        does not load, :class:`NoSettingsFile` if there is none."""
        if not self.path:
            raise NoSettingsFile(
                f"no settings file to reload: start with --config or ${CONFIG.variable}"
            )
        settings = load(None, self._given)
        proxy = self._prepare(settings.proxy)
        # Where the server listens is where it started: a file that drops the last
        # client key while an upstream key is held is warned of, as at start.
        started = self._started
        warn_of_open_relay(dataclasses.replace(settings, host=started.host, port=started.port))
        return Change(proxy, _needs_restart(started, settings))


def _needs_restart(started: ServerSettings, now: ServerSettings) -> tuple[str, ...]:
    keys = [key for name, key in _RESTART.items() if getattr(started, name) != getattr(now, name)]
    for field in dataclasses.fields(ServerLimits):
        if getattr(started.limits, field.name) != getattr(now.limits, field.name):
            keys.append(_LIMIT_KEYS.get(field.name, f"limits.{field.name}"))
    return tuple(keys)


def describe(old: ProxyConfig, new: ProxyConfig) -> str:
    """What a reload changed, in short: the upstreams and keys by count, and which
    came and went by name (names are what logs show; keys themselves never)."""
    upstreams = ([u.name for u in c.router().upstreams] for c in (old, new))
    keys = ([k.name for k in c.keys()] for c in (old, new))  # noqa: SIM118 (not a dict)
    return f"{_counted('upstream', *upstreams)}, {_counted('key', *keys)}"


def _counted(what: str, before: list[str], after: list[str]) -> str:
    text = f"{len(after)} {what}{'' if len(after) == 1 else 's'}"
    added = ", ".join(f'"{name}"' for name in after if name not in before)
    removed = ", ".join(f'"{name}"' for name in before if name not in after)
    changes = [f"added {added}"] if added else []
    changes += [f"removed {removed}"] if removed else []
    return f"{text} ({'; '.join(changes)})" if changes else text
