"""``trioproxy conformance``: wiring the command line to :mod:`trioproxy.conformance.runner`."""

import argparse

import trio

from trioproxy.conformance.html import render_html
from trioproxy.conformance.proxy_process import Target, running_proxy
from trioproxy.conformance.report import Report, RunConfig, write_json
from trioproxy.conformance.runner import run_conformance, with_sim
from trioproxy.sim import SimUpstream

__all__ = ["run"]


async def run(args: argparse.Namespace) -> int:
    config = RunConfig(
        repeats=args.repeats,
        storms=tuple(args.storm or [200]),
        bound_ms=args.bound_ms,
        storm_bound_ms=args.storm_bound_ms,
        wait_s=args.wait_s,
        strict=args.strict,
        close_within_s=args.close_within_s,
        storm_close_within_s=args.storm_close_within_s,
    )

    async def body(sim: SimUpstream, upstream: str) -> Report:
        if args.proxy_cmd:
            tls: list[Target] = []
            async with running_proxy(args.proxy_cmd, upstream, tls=tls) as target:
                proxy = args.proxy_cmd
                return await run_conformance(sim, target, config, proxy, *tls)
        target = _parse(args.proxy_url)
        print(
            f"simulated upstream: {upstream}\nwaiting for the proxy at {args.proxy_url} ...",
            flush=True,
        )
        with trio.fail_after(300):
            while True:
                try:
                    await (await trio.open_tcp_stream(*target)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.2)  # not up yet: the user is starting it
        return await run_conformance(sim, target, config, args.proxy_url)

    report = await with_sim(body, args.upstream_port)
    print(report.table())
    if args.json:
        write_json(report, args.json)
    if args.html:
        await trio.Path(args.html).write_text(render_html(report))
    print("PASS" if report.passed else "FAIL")
    return 0 if report.passed else 1


def _parse(url: str) -> Target:
    host, _, port = url.split("://", 1)[-1].split("/", 1)[0].rpartition(":")
    return (host or "127.0.0.1", int(port or 80))
