"""The ``trioproxy`` command: serve, sim, demo."""

import argparse
import logging
import signal
import sys
from functools import partial

import trio

from trioproxy.config import MiB, ProxyConfig
from trioproxy.server import hypercorn_config, serve_app, serve_proxy
from trioproxy.sim import SimParams, SimUpstream

__all__ = ["main"]

log = logging.getLogger("trioproxy")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trioproxy", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="default %(default)s")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument(
        "--upstream",
        help="OpenAI-style base URL, e.g. http://127.0.0.1:8080/v1 "
        "(default: the built-in simulated upstream, in-process)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--upstream-key", help="replaces the client's Authorization upstream")
    serve.add_argument(
        "--upstream-ca",
        metavar="PEM",
        help="CA bundle to verify an HTTPS upstream (default: the system's)",
    )
    serve.add_argument("--certfile", help="TLS certificate (PEM); enables HTTPS and HTTP/2")
    serve.add_argument("--keyfile", help="TLS private key (PEM)")
    serve.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    serve.add_argument(
        "--headers-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="longest wait for upstream response headers (default %(default)s)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="longest upstream silence between chunks (default %(default)s)",
    )
    serve.add_argument(
        "--max-body-mib",
        type=float,
        default=32.0,
        metavar="MIB",
        help="largest request body; larger ones get 413 (default %(default)s)",
    )

    sim = commands.add_parser("sim", help="run the simulated upstream alone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--tokens", type=int, default=16)
    sim.add_argument("--interval", type=float, default=0.02, metavar="S")
    sim.add_argument("--headers-delay", type=float, default=0.0, metavar="S")
    sim.add_argument("--first-token-delay", type=float, default=0.0, metavar="S")

    commands.add_parser("demo", help="stop requests in every phase and time the upstream's close")

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
    conf.add_argument("--bound-ms", type=float, default=5.0, help="p99 bound per phase")
    conf.add_argument("--storm-bound-ms", type=float, default=20.0, help="p99 bound, storm")
    conf.add_argument(
        "--wait-s",
        type=float,
        default=3.0,
        help="how long a stopped request's upstream may run before it counts as "
        "never closed (default %(default)s)",
    )
    conf.add_argument("--json", metavar="PATH", help="write the results here too")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "serve":
            trio.run(_serve, args)
        elif args.command == "sim":
            trio.run(_sim, args)
        elif args.command == "conformance":
            from trioproxy.conformance_cli import run

            logging.getLogger().setLevel(logging.WARNING)
            sys.exit(trio.run(run, args))
        else:
            from trioproxy.demo import run_demo

            logging.getLogger().setLevel(logging.WARNING)
            trio.run(run_demo)
    except KeyboardInterrupt:
        sys.exit(0)


async def _wait_for_signal() -> None:
    """Return at SIGINT or SIGTERM: hypercorn then stops accepting and drains."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s: shutting down", signal.Signals(signum).name)
            return


async def _serve(args: argparse.Namespace) -> None:
    config = hypercorn_config(args.host, args.port, args.certfile, args.keyfile)
    async with trio.open_nursery() as nursery:
        upstream = args.upstream
        if upstream is None:
            (bound,) = await nursery.start(
                serve_app, SimUpstream(SimParams(interval_s=0.02)), hypercorn_config("127.0.0.1", 0)
            )
            upstream = f"{bound}/v1"
            log.info(
                "no --upstream given: relaying to the built-in simulated upstream at %s", upstream
            )
        proxy = ProxyConfig(
            upstream=upstream,
            upstream_key=args.upstream_key,
            connect_timeout_s=args.connect_timeout,
            headers_timeout_s=args.headers_timeout,
            idle_timeout_s=args.idle_timeout,
            max_body_bytes=int(args.max_body_mib * MiB),
            upstream_ca=args.upstream_ca,
        )
        async with trio.open_nursery() as proxy_nursery:
            serve = partial(serve_proxy, proxy, config, shutdown_trigger=_wait_for_signal)
            await proxy_nursery.start(serve)
            log.info("trioproxy relaying to %s", upstream)
        nursery.cancel_scope.cancel()  # the in-process simulated upstream, if any


async def _sim(args: argparse.Namespace) -> None:
    params = SimParams(args.headers_delay, args.first_token_delay, args.tokens, args.interval)
    await serve_app(
        SimUpstream(params),
        hypercorn_config(args.host, args.port),
        shutdown_trigger=_wait_for_signal,
    )
