"""The ``trioproxy`` command: serve, sim, demo, conformance, example-config."""

import argparse
import gc
import logging
import os
import signal
import sys
from dataclasses import replace
from functools import partial
from importlib import resources
from typing import Any, NoReturn

import trio

from trioproxy import __version__
from trioproxy.proxy.admin.cluster import RUN_DIR
from trioproxy.proxy.app import serve_proxy
from trioproxy.proxy.core import lines
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.gateway.options import OPTIONS, add_to
from trioproxy.proxy.gateway.reload import SettingsFile
from trioproxy.proxy.gateway.settings import ServerSettings, SettingsError, load
from trioproxy.proxy.gateway.startup import (
    bind_error,
    reachable,
    warn_of_keys_given,
    warn_of_open_relay,
)
from trioproxy.proxy.workers import LISTEN_FD, run_workers, worker_options
from trioproxy.server import IncompatibleVersions, Signals, check_versions, hypercorn_config
from trioproxy.sim import SimParams, SimUpstream, serve_sim

__all__ = ["main"]

log = logging.getLogger("trioproxy")

EXAMPLE = resources.files("trioproxy.proxy.gateway") / "example.toml"
"""The example settings file, in the package (``docs/trioproxy.example.toml`` copies it)."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (the usage is a ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


_LEVELS = ("debug", "info", "warning", "error", "critical")
_LOG_LEVEL_VARIABLE = "TRIOPROXY_LOG_LEVEL"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trioproxy",
        description="An OpenAI-compatible streaming reverse proxy whose client's stop "
        "closes the upstream at once.",
    )
    parser.add_argument("--version", action="version", version=f"trioproxy {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get(_LOG_LEVEL_VARIABLE, "INFO"),
        help=f"{', '.join(_LEVELS)} (default INFO; variable {_LOG_LEVEL_VARIABLE})",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the proxy",
        description="Options override the --config file and TRIOPROXY_* variables; "
        "trioproxy example-config prints a settings file with every key.",
    )
    add_to(serve)
    # Also after the command, where operators put every other serve option; absent
    # there, the one before the command (or the variable) stands.
    serve.add_argument("--log-level", default=argparse.SUPPRESS, help="as before the command")

    sim = commands.add_parser("sim", help="run the simulated upstream alone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--tokens", type=int, default=16)
    sim.add_argument("--interval", type=float, default=0.02, metavar="S")
    sim.add_argument("--headers-delay", type=float, default=0.0, metavar="S")
    sim.add_argument("--first-token-delay", type=float, default=0.0, metavar="S")

    commands.add_parser("demo", help="stop requests in every phase and time the upstream's close")
    commands.add_parser(
        "example-config", help="print an example settings file, every key explained"
    )

    conf = commands.add_parser("conformance", help="check any proxy's cancellation, in every phase")
    target = conf.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--proxy-cmd",
        metavar="COMMAND",
        help="starts the proxy; {upstream} and {port} are filled in",
    )
    target.add_argument(
        "--proxy-url",
        metavar="URL",
        help="a proxy already running in front of the upstream this prints",
    )
    conf.add_argument(
        "--upstream-port",
        type=int,
        default=0,
        help="port of the simulated upstream (default: any free one)",
    )
    conf.add_argument("--repeats", type=int, default=20, help="stops per scenario")
    conf.add_argument(
        "--storm",
        type=int,
        action="append",
        help="concurrent streams in a storm; repeat for several (default 200)",
    )
    conf.add_argument(
        "--bound-ms",
        type=_positive,
        default=5.0,
        help="speed: p99 bound per phase, graded fast/slow (default %(default)s)",
    )
    conf.add_argument(
        "--storm-bound-ms",
        type=_positive,
        default=20.0,
        help="speed: p99 bound in a storm (default %(default)s)",
    )
    conf.add_argument(
        "--strict",
        action="store_true",
        help="fail the run on a speed bound missed too, not only on a stop not passed on",
    )
    conf.add_argument(
        "--close-within-s",
        type=_positive,
        default=1.0,
        help="correctness: every stopped upstream of a phase closes within this "
        "(default %(default)s)",
    )
    conf.add_argument(
        "--storm-close-within-s",
        type=_positive,
        default=2.0,
        help="correctness: the same in a storm (default %(default)s)",
    )
    conf.add_argument(
        "--wait-s",
        type=_positive,
        default=3.0,
        help="how long a stopped request's upstream may run before it counts as "
        "never closed (default %(default)s)",
    )
    conf.add_argument("--json", metavar="PATH", help="write the results here too")
    conf.add_argument(
        "--html", metavar="PATH", help="write a self-contained page with grades and latencies"
    )
    return parser


def _positive(text: str) -> float:
    """A duration or bound: a finite number above zero, at most a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 86_400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 86400: {text!r}")
    return value


def _given_as_option(argv: list[str] | None) -> bool:
    words = sys.argv[1:] if argv is None else argv
    return any(w == "--log-level" or w.startswith("--log-level=") for w in words)


def _setup_logging(level: str) -> None:
    # One handler for every logger, ours and the libraries': each record is
    # written as one line, its control characters escaped (CWE-117).
    # ``serve`` may switch it to JSON lines once its settings are read (lines.use).
    handler = logging.StreamHandler()
    handler.setFormatter(lines.formatter("text"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # httpx logs every request at INFO: the access log already has one line each.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.log_level.lower() not in _LEVELS:
        given = "--log-level"
        if os.environ.get(_LOG_LEVEL_VARIABLE) == args.log_level and not _given_as_option(argv):
            given = _LOG_LEVEL_VARIABLE
        sys.exit(f"trioproxy: {given} = {args.log_level!r}: not one of {', '.join(_LEVELS)}")
    _setup_logging(args.log_level)
    try:
        check_versions()  # every command serves something on the server
    except IncompatibleVersions as exc:
        sys.exit(f"trioproxy: {exc}")
    try:
        if args.command == "serve":
            _run_serve(args)
        elif args.command == "sim":
            trio.run(_sim, args)
        elif args.command == "example-config":
            sys.stdout.write(EXAMPLE.read_text())
        elif args.command == "conformance":
            from trioproxy.conformance.cli import run

            logging.getLogger().setLevel(logging.WARNING)
            sys.exit(trio.run(run, args))
        else:
            from trioproxy.demo import run_demo

            logging.getLogger().setLevel(logging.WARNING)
            trio.run(run_demo)
    except KeyboardInterrupt:
        sys.exit(0)


def _settings(given: dict[str, Any]) -> ServerSettings:
    try:
        return load(None, given)
    except SettingsError as exc:
        sys.exit(f"trioproxy: configuration error: {exc}")


def _run_serve(args: argparse.Namespace) -> None:
    # Until the server catches it, a SIGHUP (a reload) must not end the process, as
    # its default would; a worker's parent has ignored it for the worker already.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    given = worker_options()  # a worker: the parent's options, never in its own argv
    parent = given is None
    if given is None:
        given = {opt.name: getattr(args, opt.name) for opt in OPTIONS}
    settings = _settings(given)
    lines.use(settings.log_format)  # before the first line: every line is in one format
    if parent:
        warn_of_keys_given(given)
        warn_of_open_relay(settings)
    try:
        if settings.workers > 1:
            run_workers(settings.workers, settings.host, settings.port, given, args.log_level)
        else:
            trio.run(_serve, settings, given)
    except (OSError, BaseExceptionGroup) as exc:
        if (cause := bind_error(exc)) is None:
            raise
        reason = os.strerror(cause.errno or 0)
        sys.exit(f"trioproxy: cannot listen on {settings.host}:{settings.port}: {reason}")


async def _serve(settings: ServerSettings, given: dict[str, Any]) -> None:
    signals = Signals(settings.grace_period_s)
    config = hypercorn_config(
        settings.host,
        settings.port,
        settings.certfile,
        settings.keyfile,
        keep_alive_s=settings.keep_alive_s,
        limits=settings.limits,
    )
    config.graceful_timeout = settings.grace_period_s
    if fd := os.environ.get(LISTEN_FD):  # a worker of run_workers: the socket is inherited
        config.bind = [f"fd://{fd}"]
    proxy = settings.proxy
    async with trio.open_nursery() as nursery:
        nursery.start_soon(signals.run)
        sim_url = None
        if not proxy.upstream:
            sim = SimUpstream(SimParams(interval_s=0.02))
            (bound,) = await nursery.start(partial(serve_sim, sim, server="guarded"))
            sim_url = f"{bound}/v1"
            proxy = replace(proxy, upstream=sim_url)
            log.warning(
                "no upstream configured: relaying to the built-in simulated upstream at %s/v1: "
                "every answer is MADE UP%s; give --upstream, $TRIOPROXY_UPSTREAM or a --config "
                "file with [[upstream]] tables",
                bound,
                f", for any client that reaches {settings.host}:{settings.port}"
                if reachable(settings.host)
                else "",
            )
        async with trio.open_nursery() as proxy_nursery:
            serve = partial(
                serve_proxy,
                proxy,
                config,
                shutdown_trigger=signals.wait_stop,
                stop_now_trigger=signals.wait_stop_now,
                reload_trigger=signals.wait_reload,
                settings_file=SettingsFile(given, settings, partial(_with_sim, sim_url)),
                run_dir=os.environ.get(RUN_DIR),
            )
            await proxy_nursery.start(serve)
            # What is alive now (modules, the app, the pool) lives as long as
            # the process: the cyclic collector's full passes need not walk it
            # again. In a storm of 1000 stops a full pass was a pause of
            # 140-180 ms, every relay and stop waiting behind it; 40-60 ms after.
            gc.collect()
            gc.freeze()
            for upstream in proxy.router().upstreams:
                log.info(
                    "trioproxy relaying to %s (%s; models %s)",
                    upstream.url,
                    upstream.name,
                    ", ".join(upstream.models),
                )
        nursery.cancel_scope.cancel()  # the in-process simulated upstream, and the signals


def _with_sim(sim_url: str | None, proxy: ProxyConfig) -> ProxyConfig:
    """A reload's settings as start-up served them: with no upstream, the simulator's,
    if start-up started one (it starts only at start)."""
    if proxy.upstream:
        return proxy
    if sim_url is None:
        raise SettingsError("no upstream configured: the built-in simulator starts only at start")
    return replace(proxy, upstream=sim_url)


async def _sim(args: argparse.Namespace) -> None:
    params = SimParams(args.headers_delay, args.first_token_delay, args.tokens, args.interval)
    signals = Signals()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(signals.run)
        await serve_sim(
            SimUpstream(params),
            args.host,
            args.port,
            server="guarded",
            shutdown_trigger=signals.wait_stop,
        )
        nursery.cancel_scope.cancel()
