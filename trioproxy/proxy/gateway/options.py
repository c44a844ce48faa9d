"""Every setting of ``trioproxy serve``, once: its option, TOML key, variable and default.

This table drives the command line (:func:`add_to`), the TOML keys and the
``TRIOPROXY_*`` variables :mod:`.settings` reads (:func:`resolve`), and the
option table in the README (:func:`markdown`; ``python -m
trioproxy.proxy.gateway.options README.md`` rewrites it, and a test checks
that it is current). What only a file can say (several upstreams, named keys
with limits, keys read from other variables) is in :mod:`.settings`.
"""

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONFIG",
    "OPTIONS",
    "Option",
    "OptionError",
    "add_to",
    "markdown",
    "plain",
    "resolve",
    "toml_text",
]

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


class OptionError(ValueError):
    """A value the option cannot take; the message names where it came from."""


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    """The command line's ``--name`` (with dashes) and the key :func:`resolve` returns."""
    kind: Callable[[str], Any]
    """``str``, ``int`` or ``float``; for ``repeat`` options, the type of one item."""
    default: Any
    meaning: str
    """For ``--help`` and the README."""
    metavar: str | None = None
    toml: str | None = None
    """``section.key`` in the settings file, or None."""
    env: str | None = ""
    """The variable; "" means ``TRIOPROXY_`` and the name in capitals; None: none."""
    flag: bool = False
    """Takes no value (``--early-headers``); true in a file or variable is ``true``/``1``."""
    repeat: bool = False
    """May be given several times; a variable or file gives a list (a comma-separated one)."""
    accumulate: bool = False
    """The file's list and the command line's (or the variable's) add up, no one wins."""
    shown_default: str | None = None
    """The README's default column, where the value itself would say less."""
    secret: bool = False
    """A key: given on the command line, it is in ``/proc/PID/cmdline`` for any local
    user to read, so start-up warns and points to the variable or the file."""
    minimum: float | None = None
    """The least value a number may take (inclusive); None: no bound below."""
    above: float | None = None
    """A number must be more than this (a timeout of 0 would fail every request)."""
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    """The only values a string may take; empty: any."""

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str | None:
        return f"TRIOPROXY_{self.name.upper()}" if self.env == "" else self.env

    def parse(self, text: str, where: str) -> Any:
        """A string from a variable or the command line, as this option's type."""
        if self.flag:
            if text.lower() not in _TRUE | _FALSE:
                raise OptionError(f"{where} = {text!r}: not true or false")
            return text.lower() in _TRUE
        if self.repeat:
            return [self._one(item.strip(), where) for item in text.split(",") if item.strip()]
        return self._one(text, where)

    def _one(self, text: str, where: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            raise OptionError(f"{where} = {text!r}: not {_KIND_NAMES[self.kind]}") from None
        return self.check(value, where, repr(text))

    def given(self, value: Any, where: str) -> Any:
        """A value from the command line: strings parsed, typed values (a caller's
        own, a worker's from its parent) checked as a file's are."""
        if value is None:
            return None
        if self.repeat and isinstance(value, list):
            return [
                self._one(v, where) if isinstance(v, str) else self._typed_one(v, where, repr(v))
                for v in value
            ]
        if isinstance(value, str) and (self.kind is not str or self.flag):
            return self.parse(value, where)
        return self.typed(value, where)

    def typed(self, value: Any, where: str) -> Any:
        """A value from the settings file, which must have this option's type already:
        ``port = "eighty"`` is refused, and so is ``origins = "x"`` for a list."""
        shown = toml_text(value)
        if self.repeat:
            if not isinstance(value, list):
                raise OptionError(f"{where} = {shown}: not a list (write [...])")
            return [self._typed_one(v, where, shown) for v in value]
        return self._typed_one(value, where, shown)

    def _typed_one(self, value: Any, where: str, shown: object) -> Any:
        if self.flag:
            ok = isinstance(value, bool)
        elif self.kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            kind = int if self.kind is int else str
            ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            wanted = "true or false" if self.flag else _KIND_NAMES[self.kind]
            raise OptionError(f"{where} = {shown}: not {wanted}")
        return self.check(value, where, shown)

    def check(self, value: Any, where: str, shown: object = None) -> Any:
        """``value`` if it is in this option's range, else an :class:`OptionError`."""
        if self.kind is str or self.flag:
            if self.kind is str and not isinstance(value, bool) and not value:
                raise OptionError(f'{where} = "": must not be empty')
            if self.choices and value not in self.choices:
                shown = repr(value) if shown is None else shown
                raise OptionError(f"{where} = {shown}: not one of {', '.join(self.choices)}")
            return value
        number = float(value)
        wrong = None
        if not math.isfinite(number):
            wrong = "must be a finite number"
        elif self.minimum is not None and number < self.minimum:
            wrong = f"must be at least {self.minimum:g}"
        elif self.above is not None and number <= self.above:
            wrong = f"must be more than {self.above:g}"
        elif self.maximum is not None and number > self.maximum:
            wrong = f"must be at most {self.maximum:g}"
        if wrong:
            raise OptionError(f"{where} = {repr(value) if shown is None else shown}: {wrong}")
        return value


def toml_text(value: object) -> str:
    """``value`` as the file would write it, bounded: it goes into one error line."""
    text = json.dumps(value) if isinstance(value, str | int | float | bool | list) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_KIND_NAMES: dict[object, str] = {str: "a string", int: "an integer", float: "a number"}


CONFIG = Option(
    "config",
    str,
    None,
    "settings file: several upstreams routed by model, replicas balanced by requests in "
    "flight, fallbacks, named keys with limits (`trioproxy example-config` prints an example)",
    "TOML",
    shown_default="none",
)
"""The settings file itself: its path comes from the command line or the variable."""

OPTIONS: tuple[Option, ...] = (
    CONFIG,
    Option("upstream", str, None, "OpenAI-style base URL: `/v1/chat/completions` goes to "
           "`URL/chat/completions`; replaces the file's upstreams", "URL",
           shown_default="the file's, else the built-in simulator"),
    Option("host", str, "127.0.0.1", "where to listen (HTTP/1.1 and h2c)", "HOST",
           toml="server.host"),
    Option("port", int, 8000, "the port to listen on", "PORT", toml="server.port",
           minimum=0, maximum=65535),
    Option("certfile", str, None, "serve HTTPS (PEM certificate); browsers then speak HTTP/2",
           "PEM", toml="server.certfile", shown_default="none"),
    Option("keyfile", str, None, "the certificate's private key (PEM)", "PEM",
           toml="server.keyfile", shown_default="none"),
    Option("upstream_key", str, None, "sent upstream as `Authorization: Bearer KEY` (or in "
           "`--upstream-key-header`), in place of every client credential", "KEY",
           shown_default="none", secret=True),
    Option("upstream_key_header", str, "authorization", "the header `--upstream-key` goes in: "
           "`authorization` as `Bearer KEY`, any other (`x-api-key`, `api-key`) as the key alone; "
           "never a hop-by-hop or framing header", "NAME"),
    Option("upstream_header", str, [], "a header sent upstream with every request, in place of "
           "the client's of that name (repeatable; `anthropic-version:2023-06-01`); the variable "
           "is comma-separated", "NAME:VALUE", env="TRIOPROXY_UPSTREAM_HEADERS", repeat=True,
           shown_default="none"),
    Option("upstream_query", str, [], "a query parameter added to every request, in place of "
           "the client's of that name (repeatable; `api-version=2024-10-21`)", "NAME=VALUE",
           env="TRIOPROXY_UPSTREAM_QUERY", repeat=True, shown_default="none"),
    Option("upstream_stream", str, False, "ask the upstream for a stream when a client's "
           "chat completion or completion is not one, and answer the JSON assembled from it: "
           "a client that leaves then stops engines that only notice it while streaming "
           "(llama.cpp); see docs/upstreams.md", flag=True,
           shown_default="off"),
    Option("upstream_ca", str, None, "verify an HTTPS upstream with this CA bundle", "PEM",
           shown_default="certifi's CAs"),
    Option("connect_timeout", float, 10.0, "connecting to the upstream", "S",
           toml="timeouts.connect_s", above=0),
    Option("headers_timeout", float, 600.0, "waiting for the upstream's response headers "
           "(504 past it)", "S", toml="timeouts.headers_s", above=0),
    Option("idle_timeout", float, 300.0, "upstream silence between chunks (the stream ends "
           "with an SSE `error` event)", "S", toml="timeouts.idle_s", above=0),
    Option("cooldown", float, 10.0, "how long an upstream whose connections fail is skipped "
           "while it has replicas", "S", toml="timeouts.cooldown_s", minimum=0),
    Option("max_body_mib", float, 32.0, "larger request bodies get 413", "MIB",
           toml="limits.max_body_mib", above=0),
    Option("body_timeout", float, 60.0, "the whole request body must arrive within this "
           "(else 408)", "S", toml="limits.body_timeout_s", above=0),
    Option("keep_alive_timeout", float, 5.0, "an idle client connection, or an unfinished "
           "request head, is closed", "S", toml="server.keep_alive_s", above=0),
    Option("h2_stream_buffer_kib", float, 64.0, "answer bytes held for an HTTP/2 client that "
           "does not read; past it the upstream is not read", "KIB",
           toml="limits.h2_stream_buffer_kib", above=0),
    Option("h2_max_resets", int, 200, "HTTP/2 stream resets per connection per second before "
           "GOAWAY", "N", toml="limits.h2_max_resets_per_s", minimum=1),
    Option("h2_max_priority", int, 100, "HTTP/2 PRIORITY frames per connection per second "
           "before GOAWAY (priorities themselves are ignored)", "N",
           toml="limits.h2_max_priority_per_s", minimum=1),
    Option("h2_max_window_updates", int, 1000, "HTTP/2 WINDOW_UPDATE frames per connection per "
           "second before GOAWAY, plus 4 for each DATA frame sent in that second", "N",
           toml="limits.h2_max_window_updates_per_s", minimum=1),
    Option("h2_max_settings", int, 100, "HTTP/2 SETTINGS frames per connection per second "
           "before GOAWAY", "N", toml="limits.h2_max_settings_per_s", minimum=1),
    Option("h2_max_pings", int, 100, "HTTP/2 PING frames per connection per second before "
           "GOAWAY", "N", toml="limits.h2_max_pings_per_s", minimum=1),
    Option("h2_max_empty_data", int, 100, "HTTP/2 DATA frames with no data and no END_STREAM "
           "per connection per second before GOAWAY", "N", toml="limits.h2_max_empty_data_per_s",
           minimum=1),
    Option("h2_max_continuations", int, 500, "HTTP/2 CONTINUATION frames per connection per "
           "second before GOAWAY", "N", toml="limits.h2_max_continuations_per_s", minimum=1),
    Option("h2_max_other_frames", int, 100, "HTTP/2 GOAWAY, ALTSVC and unknown-type frames "
           "per connection per second before GOAWAY", "N", toml="limits.h2_max_other_frames_per_s",
           minimum=1),
    Option("send_stall", float, 60.0, "cut off a client that takes no byte of an answer for "
           "this long", "S", toml="limits.send_stall_s", above=0),
    Option("api_key", str, [], "clients must send `Authorization: Bearer KEY` (repeatable); "
           "never forwarded", "KEY", toml="auth.api_keys", env="TRIOPROXY_API_KEYS",
           repeat=True, accumulate=True, shown_default="none", secret=True),
    Option("admin_key", str, None, "enables the admin: the live page at `/admin/`, "
           "`GET /admin/requests`, `DELETE /admin/requests/{id}` and `POST /admin/reload`",
           "KEY",
           shown_default="none", secret=True),
    Option("metrics_key", str, None, "`/metrics` then needs `Authorization: Bearer KEY` (or "
           "the admin key); without it `/metrics` is open", "KEY", toml="auth.metrics_key",
           shown_default="none", secret=True),
    Option("cors_origin", str, [], "browser origins allowed to call the proxy (repeatable; "
           "`*` for any)", "ORIGIN", toml="cors.origins", env="TRIOPROXY_CORS_ORIGINS",
           repeat=True, shown_default="none"),
    Option("heartbeat", float, 0.0, "`: keep-alive` SSE comments after this much upstream "
           "silence; 0 is off", "S", toml="stream.heartbeat_s", shown_default="off",
           minimum=0),
    Option("early_headers", str, False, "answer streams 200 at once, with heartbeats until "
           "the upstream answers (its errors then come as SSE `error` events)",
           toml="stream.early_headers", flag=True, shown_default="off"),
    Option("grace_period", float, 30.0, "on SIGTERM or SIGINT, how long streams in flight "
           "may finish (a second one, or SIGQUIT, ends them now)", "S",
           toml="server.grace_period_s", minimum=0),
    Option("log_format", str, "text", "`text`, or `json`: every log line one JSON object, "
           "the access line's values as fields (docs/deploy.md)", "FORMAT",
           toml="server.log_format", choices=("text", "json")),
    Option("workers", int, 1, "processes sharing the port, seen as one server by the admin, "
           "`/metrics`, key limits and balancing", "N", toml="server.workers", minimum=1,
           maximum=256),
)  # fmt: skip


def add_to(parser: argparse.ArgumentParser) -> None:
    """The options, each defaulting to None: :func:`resolve` tells given from not.

    Values stay strings here: :func:`resolve` parses them, so a wrong one is refused
    in one line naming the option, like a wrong variable or file key."""
    for opt in OPTIONS:
        help_text = f"{plain(opt.meaning)} (default {_shown(opt)})".replace("%", "%%")
        if opt.variable:
            help_text += f"; ${opt.variable}"
        if opt.flag:
            parser.add_argument(opt.option, action="store_true", default=None, help=help_text)
        else:
            action = "append" if opt.repeat else "store"
            parser.add_argument(opt.option, action=action, metavar=opt.metavar, help=help_text)


def plain(text: str) -> str:
    """``text`` without its Markdown, for ``--help``: links as their words, no backticks."""
    return re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", text).replace("`", "")


def resolve(
    file: Mapping[str, Any], env: Mapping[str, str], given: Mapping[str, Any], source: str = ""
) -> dict[str, Any]:
    """Each option's value: the command line over the variable over the file over the default.

    Each value is checked where it comes from (its type and range), so an
    :class:`OptionError` names the option, the variable or ``source``'s key, and the value.
    """
    values = {}
    for opt in OPTIONS:
        from_file = _from_file(opt, file)
        if from_file is not None:
            from_file = opt.typed(from_file, f"{source}: {opt.toml}" if source else str(opt.toml))
        name = opt.variable
        from_env = opt.parse(env[name], name) if name and name in env else None
        over = opt.given(given.get(opt.name), opt.option)
        over = over if over is not None else from_env
        if opt.accumulate:
            values[opt.name] = [*(from_file or []), *(over or [])]
        else:
            values[opt.name] = next(
                (v for v in (over, from_file) if v is not None), _copy(opt.default)
            )
    return values


def _from_file(opt: Option, file: Mapping[str, Any]) -> Any:
    if opt.toml is None:
        return None
    section, key = opt.toml.split(".")
    return file.get(section, {}).get(key)


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _shown(opt: Option) -> str:
    if opt.shown_default is not None:
        return opt.shown_default
    value = opt.default
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown() -> str:
    """The README's option table."""
    rows = [
        "| option | file key | variable | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for opt in OPTIONS:
        usage = f"`{opt.option}`" if opt.metavar is None else f"`{opt.option} {opt.metavar}`"
        toml = f"`{opt.toml}`" if opt.toml else ""
        variable = f"`{opt.variable}`" if opt.variable else ""
        rows.append(f"| {usage} | {toml} | {variable} | {_shown(opt)} | {opt.meaning} |")
    return "\n".join(rows) + "\n"


_BEGIN, _END = (
    "<!-- options: python -m trioproxy.proxy.gateway.options README.md -->",
    "<!-- /options -->",
)


def rewrite(text: str) -> str:
    """``text`` with the table between its markers replaced by the current one."""
    start, end = text.index(_BEGIN) + len(_BEGIN), text.index(_END)
    return f"{text[:start]}\n{markdown()}{text[end:]}"


if __name__ == "__main__":
    path = sys.argv[1]
    with open(path) as file:
        old = file.read()
    with open(path, "w") as file:
        file.write(rewrite(old))
