"""Settings from a TOML file, the environment and the command line, in that order of strength.

A wrong file stops start-up with a :class:`SettingsError` that names the key
or the line. See ``docs/trioproxy.example.toml`` for every key.
"""

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from trioproxy.proxy.gateway.config import ClientKey, MiB, ProxyConfig
from trioproxy.proxy.gateway.routing import Upstream
from trioproxy.server.guards import DEFAULTS, ServerLimits

__all__ = ["ServerSettings", "SettingsError", "load"]

_SCHEMA: dict[str, set[str]] = {
    "server": {
        "host",
        "port",
        "certfile",
        "keyfile",
        "workers",
        "grace_period_s",
        "keep_alive_s",
    },
    "timeouts": {"connect_s", "headers_s", "idle_s", "cooldown_s"},
    "limits": {
        "max_body_mib",
        "body_timeout_s",
        "h2_stream_buffer_kib",
        "h2_max_resets_per_s",
        "send_stall_s",
    },
    "auth": {"api_keys", "api_keys_env", "admin_key_env"},
    "stream": {"heartbeat_s", "early_headers"},
    "cors": {"origins"},
    "upstream": {"name", "url", "api_key_env", "models", "fallback", "ca"},
    "key": {"name", "key_env", "max_concurrent", "per_minute"},
}


class SettingsError(Exception):
    """The configuration is wrong: the user's to fix before the proxy can start."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    certfile: str | None = None
    keyfile: str | None = None
    workers: int = 1
    grace_period_s: float = 30.0
    keep_alive_s: float = 5.0
    """An idle keep-alive connection is closed after this long."""
    limits: ServerLimits = DEFAULTS
    proxy: ProxyConfig = field(default_factory=lambda: ProxyConfig(upstream=""))


def load(
    path: str | None, cli: dict[str, Any], env: dict[str, str] | None = None
) -> ServerSettings:
    """Merge the file at ``path`` (if any), ``TRIOPROXY_*`` variables and CLI values.

    ``cli`` holds only the options the user gave (None values are ignored).
    """
    env = dict(os.environ) if env is None else env
    data = _read(path) if path else {}
    _check_keys(data, path or "")
    server, timeouts = data.get("server", {}), data.get("timeouts", {})
    limits, auth, stream = data.get("limits", {}), data.get("auth", {}), data.get("stream", {})
    from_env = {
        "host": env.get("TRIOPROXY_HOST"),
        "port": env.get("TRIOPROXY_PORT"),
        "upstream": env.get("TRIOPROXY_UPSTREAM"),
        "upstream_key": env.get("TRIOPROXY_UPSTREAM_KEY"),
        "admin_key": env.get("TRIOPROXY_ADMIN_KEY"),
        "api_key": [k for k in env.get("TRIOPROXY_API_KEYS", "").split(",") if k] or None,
    }
    over: dict[str, Any] = {k: v for k, v in from_env.items() if v is not None}
    over |= {k: v for k, v in cli.items() if v is not None}

    upstreams = _upstreams(data.get("upstream", []), env)
    if over.get("upstream"):
        upstreams = (_upstream("default", str(over["upstream"]), over.get("upstream_key")),)
    api_keys = list(auth.get("api_keys", []))
    api_keys += [_env(env, name, "auth.api_keys_env") for name in auth.get("api_keys_env", [])]
    api_keys += list(over.get("api_key") or [])
    admin_env = auth.get("admin_key_env")
    admin_key = over.get("admin_key") or (
        _env(env, admin_env, "auth.admin_key_env") if admin_env else None
    )
    proxy = ProxyConfig(
        upstream=upstreams[0].url if upstreams else "",
        upstreams=upstreams,
        connect_timeout_s=float(over.get("connect_timeout", timeouts.get("connect_s", 10.0))),
        headers_timeout_s=float(over.get("headers_timeout", timeouts.get("headers_s", 600.0))),
        idle_timeout_s=float(over.get("idle_timeout", timeouts.get("idle_s", 300.0))),
        cooldown_s=float(timeouts.get("cooldown_s", 10.0)),
        max_body_bytes=int(float(over.get("max_body_mib", limits.get("max_body_mib", 32))) * MiB),
        body_timeout_s=float(over.get("body_timeout", limits.get("body_timeout_s", 60.0))),
        upstream_ca=over.get("upstream_ca"),
        api_keys=frozenset(api_keys),
        client_keys=_client_keys(data.get("key", []), env),
        admin_key=admin_key,
        cors_origins=tuple(over.get("cors_origin") or data.get("cors", {}).get("origins", [])),
        heartbeat_s=float(over.get("heartbeat", stream.get("heartbeat_s", 0.0))),
        early_headers=bool(over.get("early_headers") or stream.get("early_headers", False)),
    )
    return ServerSettings(
        host=str(over.get("host", server.get("host", "127.0.0.1"))),
        port=int(over.get("port", server.get("port", 8000))),
        certfile=over.get("certfile", server.get("certfile")),
        keyfile=over.get("keyfile", server.get("keyfile")),
        workers=int(over.get("workers", server.get("workers", 1))),
        grace_period_s=float(over.get("grace_period", server.get("grace_period_s", 30.0))),
        keep_alive_s=float(over.get("keep_alive_timeout", server.get("keep_alive_s", 5.0))),
        limits=ServerLimits(
            h2_stream_buffer_bytes=int(
                float(over.get("h2_stream_buffer_kib", limits.get("h2_stream_buffer_kib", 64)))
                * 1024
            ),
            h2_max_resets_per_s=int(
                over.get("h2_max_resets", limits.get("h2_max_resets_per_s", 200))
            ),
            send_stall_s=float(over.get("send_stall", limits.get("send_stall_s", 60.0))),
        ),
        proxy=proxy,
    )


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:  # its message names the line and column
        raise SettingsError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from exc


def _check_keys(data: dict[str, Any], path: str) -> None:
    for section, value in data.items():
        if section not in _SCHEMA:
            raise SettingsError(f"{path}: unknown section [{section}]")
        tables = value if isinstance(value, list) else [value]
        for table in tables:
            if not isinstance(table, dict):
                raise SettingsError(f"{path}: [{section}] must be a table")
            for key in table:
                if key not in _SCHEMA[section]:
                    raise SettingsError(f"{path}: unknown key {section}.{key}")


def _env(env: dict[str, str], name: str, key: str) -> str:
    value = env.get(name)
    if not value:
        raise SettingsError(f"{key}: environment variable {name} is not set")
    return value


def _client_keys(tables: list[dict[str, Any]], env: dict[str, str]) -> tuple[ClientKey, ...]:
    keys = []
    for i, table in enumerate(tables):
        name = str(table.get("name", ""))
        if not name or "key_env" not in table:
            raise SettingsError(f"[[key]] number {i + 1}: name and key_env are required")
        key = _env(env, str(table["key_env"]), f"key {name!r} key_env")
        limits = {k: table.get(k) for k in ("max_concurrent", "per_minute")}
        for what, value in limits.items():
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SettingsError(f"key {name!r}: {what} must be a positive integer")
        keys.append(ClientKey(name, key, limits["max_concurrent"], limits["per_minute"]))
    if len({k.name for k in keys}) != len(keys):
        raise SettingsError("two [[key]] tables have the same name")
    return tuple(keys)


def _upstream(name: str, url: str, key: str | None, *rest: tuple[str, ...]) -> Upstream:
    try:
        return Upstream(name, url, key, *rest)
    except ValueError as exc:
        raise SettingsError(f"upstream {name!r}: {exc}") from None


def _upstreams(tables: list[dict[str, Any]], env: dict[str, str]) -> tuple[Upstream, ...]:
    upstreams: list[Upstream] = []
    claimed: dict[str, tuple[str, tuple[str, ...]]] = {}
    for i, table in enumerate(tables):
        name = str(table.get("name", f"upstream{i + 1}"))
        if "url" not in table:
            raise SettingsError(f"upstream {name!r}: url is required")
        key_env = table.get("api_key_env")
        key = _env(env, key_env, f"upstream {name!r} api_key_env") if key_env else None
        models = tuple(table.get("models", ["*"]))
        for model in models:
            # Upstreams with the same model list are replicas, balanced; a model
            # claimed by two different lists would route by the order in the file.
            first, their_models = claimed.setdefault(model, (name, models))
            if their_models != models:
                raise SettingsError(
                    f"model {model!r} is claimed by upstreams {first!r} and {name!r} "
                    "(replicas must list the same models)"
                )
        upstreams.append(
            _upstream(name, str(table["url"]), key, models, tuple(table.get("fallback", [])))
        )
    names = {u.name for u in upstreams}
    for upstream in upstreams:
        for missing in set(upstream.fallback) - names:
            raise SettingsError(f"upstream {upstream.name!r}: fallback {missing!r} is not defined")
    return tuple(upstreams)
