"""Settings from a TOML file, the environment and the command line, in that order of strength.

A wrong file stops start-up with a :class:`SettingsError` that names the key
or the line. ``trioproxy example-config`` prints every key (``example.toml`` here,
which ``docs/trioproxy.example.toml`` copies).
"""

import os
import ssl
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from trioproxy.proxy.gateway.config import ClientKey, MiB, ProxyConfig
from trioproxy.proxy.gateway.options import CONFIG, OPTIONS, OptionError, resolve, toml_text
from trioproxy.proxy.gateway.providers import FILE_KEYS, from_options, from_table, stray_option
from trioproxy.proxy.upstream.routing import Upstream
from trioproxy.server.guards import DEFAULTS, ServerLimits

__all__ = ["ServerSettings", "SettingsError", "load"]

# What only a file says, beside the options' own keys (:data:`.options.OPTIONS`),
# with each key's type: a list is a list of non-empty strings.
_FILE_ONLY: dict[str, dict[str, type]] = {
    "auth": {"api_keys_env": list, "admin_key_env": str},
    "upstream": {
        "name": str,
        "url": str,
        "api_key_env": str,
        "models": list,
        "fallback": list,
        "ca": object,  # checked by _check_ca, which also reads it
        **FILE_KEYS,
    },
    "key": {"name": str, "key_env": str, "max_concurrent": int, "per_minute": int},
}
_ARRAYS = {"upstream", "key"}
"""Sections written ``[[name]]``, one table each; the others are one ``[name]`` table."""
_SCHEMA: dict[str, set[str]] = {section: set(keys) for section, keys in _FILE_ONLY.items()}
for _opt in OPTIONS:
    if _opt.toml:
        _section, _key = _opt.toml.split(".")
        _SCHEMA.setdefault(_section, set()).add(_key)


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
    log_format: str = "text"
    """``text`` or ``json`` (:mod:`trioproxy.proxy.core.lines`)."""
    proxy: ProxyConfig = field(default_factory=lambda: ProxyConfig(upstream=""))


def load(
    path: str | None, cli: dict[str, Any], env: dict[str, str] | None = None
) -> ServerSettings:
    """Merge the file at ``path`` (else the one ``--config`` or its variable names),
    ``TRIOPROXY_*`` variables and CLI values.

    ``cli`` holds the command line's values by option name; None is "not given".
    """
    env = dict(os.environ) if env is None else env
    path = path or cli.get(CONFIG.name) or env.get(str(CONFIG.variable))
    data = _read(path) if path else {}
    _check_keys(data, path or "")
    try:
        v = resolve(data, env, cli, source=path or "")
    except OptionError as exc:
        raise SettingsError(str(exc)) from None
    upstreams = _upstreams(data.get("upstream", []), env)
    if stray := stray_option(v):
        raise SettingsError(stray)
    single = _conventions(partial(from_options, v), "default")
    if v["upstream"]:
        upstreams = (_upstream("default", str(v["upstream"]), v["upstream_key"], **single),)
    _check_certificate(v["certfile"], v["keyfile"])
    if v["upstream_ca"]:
        _check_ca(v["upstream_ca"], "--upstream-ca")
    _one_ca_per_origin(upstreams, v["upstream_ca"])
    auth = data.get("auth", {})
    api_keys = [*v["api_key"]]
    api_keys += [_env(env, name, "auth.api_keys_env") for name in auth.get("api_keys_env", [])]
    admin_env = auth.get("admin_key_env")
    admin_key = v["admin_key"] or (
        _env(env, admin_env, "auth.admin_key_env") if admin_env else None
    )
    proxy = ProxyConfig(
        upstream=upstreams[0].url if upstreams else "",
        upstreams=upstreams,
        connect_timeout_s=float(v["connect_timeout"]),
        headers_timeout_s=float(v["headers_timeout"]),
        idle_timeout_s=float(v["idle_timeout"]),
        cooldown_s=float(v["cooldown"]),
        max_body_bytes=int(float(v["max_body_mib"]) * MiB),
        body_timeout_s=float(v["body_timeout"]),
        upstream_ca=v["upstream_ca"],
        api_keys=frozenset(api_keys),
        client_keys=_client_keys(data.get("key", []), env),
        admin_key=admin_key,
        metrics_key=v["metrics_key"],
        cors_origins=tuple(v["cors_origin"]),
        heartbeat_s=float(v["heartbeat"]),
        early_headers=bool(v["early_headers"]),
    )
    return ServerSettings(
        host=str(v["host"]),
        port=int(v["port"]),
        certfile=v["certfile"],
        keyfile=v["keyfile"],
        workers=int(v["workers"]),
        grace_period_s=float(v["grace_period"]),
        keep_alive_s=float(v["keep_alive_timeout"]),
        log_format=str(v["log_format"]),
        limits=ServerLimits(
            h2_stream_buffer_bytes=int(float(v["h2_stream_buffer_kib"]) * 1024),
            h2_max_resets_per_s=int(v["h2_max_resets"]),
            h2_max_priority_per_s=int(v["h2_max_priority"]),
            h2_max_window_updates_per_s=int(v["h2_max_window_updates"]),
            h2_max_settings_per_s=int(v["h2_max_settings"]),
            h2_max_pings_per_s=int(v["h2_max_pings"]),
            h2_max_empty_data_per_s=int(v["h2_max_empty_data"]),
            h2_max_continuations_per_s=int(v["h2_max_continuations"]),
            h2_max_other_frames_per_s=int(v["h2_max_other_frames"]),
            send_stall_s=float(v["send_stall"]),
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
    """Every section, key and file-only value of the right shape and type; the
    options' own values are checked by :func:`.options.resolve`."""
    for section, value in data.items():
        if section not in _SCHEMA:
            raise SettingsError(f"{path}: unknown section [{section}]")
        array = section in _ARRAYS
        if array != isinstance(value, list) or (array and not value):
            shape = f"[[{section}]] tables" if array else f"a [{section}] table"
            raise SettingsError(f"{path}: {section} must be {shape}")
        for i, table in enumerate(value if array else [value]):
            where = f"{path}: [[{section}]] number {i + 1}: " if array else f"{path}: {section}."
            if not isinstance(table, dict):
                raise SettingsError(f"{where.rstrip(' :.')} must be a table")
            for key, item in table.items():
                if key not in _SCHEMA[section]:
                    raise SettingsError(f"{path}: unknown key {section}.{key}")
                wanted = _FILE_ONLY.get(section, {}).get(key)
                if wanted is not None and (problem := _wrong_type(item, wanted)):
                    raise SettingsError(f"{where}{key} = {toml_text(item)}: {problem}")


def _wrong_type(value: object, wanted: type) -> str | None:
    """What is wrong with a file-only ``value``, or None."""
    if wanted is object:
        return None
    if wanted is list:
        ok = isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
        return None if ok else "not a list of strings (write [...]; none empty)"
    if wanted is dict:
        ok = isinstance(value, dict) and all(isinstance(v, str) and v for v in value.values())
        return None if ok else 'not a table of strings (write { name = "value" }; none empty)'
    if wanted is bool:
        return None if isinstance(value, bool) else "not true or false"
    if wanted is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        return None if ok else "not a positive integer"
    return None if isinstance(value, str) and value else "not a string (none empty)"


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


def _upstream(name: str, url: str, key: str | None, *rest: Any, **conventions: Any) -> Upstream:
    try:
        return Upstream(name, url, key, *rest, **conventions)
    except ValueError as exc:
        raise SettingsError(f"upstream {name!r}: {exc}") from None


def _conventions(read: Callable[[], dict[str, Any]], name: str) -> dict[str, Any]:
    try:
        return read()
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
        ca = table.get("ca")
        if ca is not None:
            _check_ca(ca, f"upstream {name!r} ca")
        fallback = tuple(table.get("fallback", []))
        conventions = _conventions(partial(from_table, table, env, name), name)
        upstreams.append(
            _upstream(name, str(table["url"]), key, models, fallback, ca, **conventions)
        )
    names = {u.name for u in upstreams}
    for upstream in upstreams:
        for missing in set(upstream.fallback) - names:
            raise SettingsError(f"upstream {upstream.name!r}: fallback {missing!r} is not defined")
    return tuple(upstreams)


def _check_ca(path: object, where: str) -> None:
    """A CA bundle that cannot verify anything stops start-up, not the first request."""
    if not isinstance(path, str) or not path:
        raise SettingsError(f"{where}: must be the path of a PEM file")
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:  # before OSError: it is one
        raise SettingsError(f"{where}: {path} holds no PEM certificate ({exc.reason})") from None
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read {path}: {exc.strerror}") from None


def _check_certificate(certfile: str | None, keyfile: str | None) -> None:
    """A certificate that cannot be served stops start-up in one line, not a traceback."""
    if certfile is None:
        if keyfile is not None:
            raise SettingsError(f"--keyfile {keyfile} without --certfile (server.certfile)")
        return
    where = f"--certfile {certfile}" + (f", --keyfile {keyfile}" if keyfile else "")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:  # before OSError: it is one
        reason = exc.reason or "not a PEM certificate and its key"
        raise SettingsError(f"{where}: {reason}") from None
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read: {exc.strerror}") from None


def _one_ca_per_origin(upstreams: tuple[Upstream, ...], default: str | None) -> None:
    # The pool keeps idle connections by scheme, host and port: two upstreams there
    # trusting different CAs would share connections verified for only one of them.
    seen: dict[tuple[str, str, int], Upstream] = {}
    for upstream in upstreams:
        first = seen.setdefault(upstream.origin, upstream)
        if (first.ca or default) != (upstream.ca or default):
            raise SettingsError(
                f"upstreams {first.name!r} and {upstream.name!r} are at the same host and port "
                "but name different CAs"
            )
