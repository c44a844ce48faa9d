"""What the settings say about how an upstream is called: its key's header, added
headers and query parameters (:class:`~trioproxy.proxy.upstream.conventions.Conventions`
checks them), and whether non-streaming completions go to it as streams.

A ``[[upstream]]`` table says it with ``key_header``, ``headers``,
``headers_env`` (values read from variables, as ``api_key_env`` reads the key),
``query`` and ``stream_upstream``; the single upstream of ``--upstream`` with
``--upstream-key-header``, ``--upstream-header NAME:VALUE``,
``--upstream-query NAME=VALUE`` and ``--upstream-stream``. Errors are ValueErrors
that name the setting, never a header's value: it may be a key.
"""

from collections.abc import Mapping
from typing import Any

from trioproxy.proxy.upstream.conventions import check_name

__all__ = ["FILE_KEYS", "from_options", "from_table", "stray_option"]

FILE_KEYS: dict[str, type] = {
    "key_header": str,
    "headers": dict,
    "headers_env": dict,
    "query": dict,
    "stream_upstream": bool,
}
"""The ``[[upstream]]`` keys read here, with their TOML types (a dict is an inline table
of non-empty strings)."""

_DEFAULT_HEADER = "authorization"
_SINGLE = ("upstream_key_header", "upstream_header", "upstream_query", "upstream_stream")


def from_table(table: Mapping[str, Any], env: Mapping[str, str], name: str) -> dict[str, Any]:
    """An ``[[upstream]]`` table's conventions, as :class:`Upstream` keywords."""
    headers = list(table.get("headers", {}).items())
    for header, variable in table.get("headers_env", {}).items():
        value = env.get(variable)
        if not value:
            raise ValueError(f"headers_env.{header}: environment variable {variable} is not set")
        headers.append((header, value))
    return {
        "key_header": table.get("key_header", _DEFAULT_HEADER),
        "headers": tuple(headers),
        "query": tuple(table.get("query", {}).items()),
        "stream_upstream": table.get("stream_upstream", False),
    }


def stray_option(values: Mapping[str, Any]) -> str | None:
    """What is wrong when an option of the single upstream is given without ``--upstream``."""
    if values["upstream"]:
        return None
    given = [n for n in _SINGLE if values[n] and values[n] != _DEFAULT_HEADER]
    if not given:
        return None
    option = "--" + given[0].replace("_", "-")
    return (
        f"{option} is for the single upstream of --upstream; in the settings file an "
        "[[upstream]] table says key_header, headers, query and stream_upstream"
    )


def from_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The single upstream's conventions from resolved option values, as keywords."""
    if not values["upstream"]:
        return {}
    key_header = values["upstream_key_header"]
    check_name(key_header, "--upstream-key-header")
    headers = _pairs(values["upstream_header"], ":", "--upstream-header", "NAME:VALUE")
    for name, _ in headers:
        check_name(name, "--upstream-header")
    query = _pairs(values["upstream_query"], "=", "--upstream-query", "NAME=VALUE")
    stream = bool(values["upstream_stream"])
    return {"key_header": key_header, "headers": headers, "query": query, "stream_upstream": stream}


def _pairs(items: list[str], sep: str, option: str, shape: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for i, item in enumerate(items, 1):
        name, found, value = item.partition(sep)
        if not found or not name.strip():
            # Not quoted: a header's value may be a key.
            raise ValueError(f"{option} number {i}: not {shape}")
        pairs.append((name.strip(), value.strip()))  # as curl -H writes it: "Name: value"
    return tuple(pairs)
