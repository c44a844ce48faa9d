"""The ASGI application: the raw relay for ``/v1/``, Quart for everything else.

The relay is a raw ASGI handler in front of Quart on purpose: a Quart view
never sees ``http.disconnect``, Quart's ``RESPONSE_TIMEOUT`` (60 s by default)
silently cuts long streams, and a generator body that holds an upstream
response is cleaned up by the garbage collector if Quart is cancelled before
it enters it. Quart keeps the routes where none of that matters: health,
the admin (behind the admin key; its event stream is raw ASGI too) and metrics.

What a request is served on is the current :class:`~.gateway.live.Snapshot`
of the settings, taken once as it arrives; a reload (SIGHUP, ``POST
/admin/reload``) builds the next one and swaps it in (:mod:`.gateway.live`).

The control routes, ``/admin`` and ``/metrics``, are the operator's: the
proxy's CORS (``--cors-origin``), meant for browser apps that call the API,
never applies to them, and their answers forbid framing, sniffing and
referrers, and let the admin page load only its own files.
"""

import logging
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import certifi
import trio
from hypercorn.config import Config
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from trioproxy import __version__
from trioproxy.asgi import ASGIApp, Message, Receive, Scope, Send
from trioproxy.proxy.admin.cluster import Cluster
from trioproxy.proxy.admin.control import ASSETS, Admin
from trioproxy.proxy.admin.inflight import Inflight
from trioproxy.proxy.admin.metrics import Metrics
from trioproxy.proxy.admin.traces import Tracing, open_tracing
from trioproxy.proxy.core.bounded import REQUEST_ID_MAX, kept
from trioproxy.proxy.core.errors import error_body
from trioproxy.proxy.core.requests import Requests
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.gateway.gate import bearer_ok, with_cors, with_keys
from trioproxy.proxy.gateway.keys import KeyLimiter
from trioproxy.proxy.gateway.live import Build, Live, Snapshot
from trioproxy.proxy.gateway.reload import SettingsFile
from trioproxy.proxy.relay.race import Relay
from trioproxy.proxy.upstream.balance import Balancer
from trioproxy.proxy.upstream.pool import UpstreamPool
from trioproxy.proxy.upstream.routing import Router
from trioproxy.server import serve_app

__all__ = ["CONTROL_HEADERS", "build_app", "open_upstream_pool", "serve_proxy"]

log = logging.getLogger("trioproxy.server")

CONTROL_HEADERS = (
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
"""On every answer of a control route (``/admin...``, ``/metrics``)."""


def _control_app(admin: Admin, metrics: Metrics, live: Callable[[], Live]) -> QuartTrio:
    app = QuartTrio("trioproxy")

    def admin_off() -> Any:
        if admin.enabled:
            return None
        return _json_error(404, "the admin is off: start with --admin-key", "not_found")

    def admin_denied() -> Any:
        if admin.allowed(request.scope):  # type: ignore[arg-type]
            return None
        return _json_error(401, "admin key missing or wrong", "invalid_api_key")

    @app.get("/admin/")
    async def admin_page() -> Any:
        if off := admin_off():
            return off
        # The page holds no data: it asks for the key and sends it on every call.
        return Response(admin.page(), content_type="text/html; charset=utf-8")

    @app.get("/admin/admin.js")
    @app.get("/admin/admin.css")
    async def admin_asset() -> Any:
        # The page's script and styles: files of their own, so the CSP needs no 'unsafe-inline'.
        if off := admin_off():
            return off
        name = request.path.rsplit("/", 1)[1]
        return Response(admin.asset(name), content_type=ASSETS[name])

    @app.get("/admin/requests")
    async def list_requests() -> Any:
        return admin_denied() or jsonify(await admin.cluster.listing())

    @app.delete("/admin/requests/<request_id>")
    async def cancel_request(request_id: str) -> Any:
        if denied := admin_denied():
            return denied
        if not await admin.cluster.cancel(request_id):
            # The id is the client's: echoed bounded, as every outside value is.
            shown = kept(request_id, REQUEST_ID_MAX)
            return _json_error(404, f"no request {shown} in flight", "not_found")
        return jsonify({"id": request_id, "outcome": "cancelled_by_admin"})

    @app.post("/admin/reload")
    async def reload() -> Any:
        if denied := admin_denied():
            return denied
        if not live().reloadable:
            message = "no settings file to reload: the server was started without --config"
            return _json_error(409, message, "no_settings_file")
        answers, unanswered = await admin.cluster.reload("POST /admin/reload")
        if failed := [a for a in answers if not a["reloaded"]]:
            reasons = "; ".join(f"worker {a['pid']}: {a['message']}" for a in failed)
            message = f"settings not reloaded: {reasons}"
            return _json_error(500, message, "reload_failed", "server_error")
        return jsonify({"reloaded": True, "workers": answers, "unanswered": unanswered})

    @app.get("/metrics")
    async def prometheus() -> Any:
        metrics_keys = live().current.metrics_keys
        if metrics_keys and not bearer_ok(request.scope, metrics_keys):  # type: ignore[arg-type]
            return _json_error(401, "metrics key missing or wrong", "invalid_api_key")
        return Response(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    # Never let Quart cut a response on a clock; streams end when they end.
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = None

    @app.get("/health")
    async def health() -> Any:
        return jsonify({"status": "ok", "version": __version__})

    @app.errorhandler(404)
    async def not_found(error: Any) -> Any:
        return _json_error(404, "not found: the OpenAI API is served under /v1/", "not_found")

    @app.errorhandler(405)
    async def not_allowed(error: Any) -> Any:
        answer = _json_error(405, "method not allowed", "method_not_allowed")
        if methods := getattr(error, "valid_methods", None):  # RFC 9110 15.5.6: say which
            answer.headers["Allow"] = ", ".join(sorted(methods))
        return answer

    return app


def _json_error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> Any:
    return Response(
        error_body(message, kind, code),
        status=status,
        content_type="application/json",
    )


def build_app(
    config: ProxyConfig,
    pool: UpstreamPool,
    run_dir: str | None = None,
    tracing: Tracing | None = None,
    settings_file: SettingsFile | None = None,
) -> tuple[ASGIApp, Cluster, Live]:
    """The app, the cluster that answers the other workers (``run_dir``: see cluster),
    and the settings it serves on, which ``settings_file`` reloads; ``tracing``
    observes the API's records as they end."""
    metrics = Metrics(models=_plain_models(config.router()))
    inflight = Inflight()
    # Every request's one record: the metrics count them all; the admin's list
    # shows the API's (a browser's /favicon.ico is counted, not listed).
    api_requests, other_requests = Requests(), Requests()
    for requests in (api_requests, other_requests):
        requests.subscribe(metrics.started, metrics.finished)
    api_requests.subscribe(inflight.add, inflight.remove)
    if tracing is not None:
        api_requests.subscribe(ended=tracing.ended)

    def live_now() -> Live:
        return live  # bound below, before anything is served

    cluster = Cluster(inflight, run_dir, reload=lambda by: live_now().reload(by).as_json())
    admin = Admin(cluster, metrics, lambda: live_now().current.admin_keys)
    control = _control_app(admin, metrics, live_now)

    async def control_routes(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/admin/events":
            await admin.events(scope, receive, send)
        else:
            await control(scope, receive, send)  # type: ignore[arg-type]

    build = _snapshots(pool, metrics, control_routes, run_dir)
    live = Live(config, build, settings_file)

    # Each request takes the snapshot once, as it arrives, and is served on it.
    async def api_now(scope: Scope, receive: Receive, send: Send) -> None:
        await live.current.api(scope, receive, send)

    async def public_now(scope: Scope, receive: Receive, send: Send) -> None:
        await live.current.public(scope, receive, send)

    api = api_requests.recorded(api_now)
    # Quart's answers outside the API (its JSON 404, 405) are recorded by their status.
    elsewhere = other_requests.recorded(public_now, own_answers=True)
    operators = _with_headers(control_routes, CONTROL_HEADERS)

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await control_routes(scope, receive, send)  # the lifespan
        elif scope["path"].startswith(("/v1/", "/openai/deployments/")):  # Azure clients too
            await api(scope, receive, send)
        elif scope["path"].startswith(("/admin", "/metrics")):
            await operators(scope, receive, send)  # the operator's: no record, no CORS
        elif scope["path"] == "/health":
            await public_now(scope, receive, send)  # polled: no record
        else:
            await elsewhere(scope, receive, send)

    return routed, cluster, live


def _plain_models(router: Router) -> frozenset[str]:
    """The exact model names, the only ones the metrics label by name."""
    return frozenset(name for name, _ in router.exact_names())


def _snapshots(
    pool: UpstreamPool, metrics: Metrics, control: ASGIApp, run_dir: str | None
) -> Build:
    """How each snapshot of the settings is built: the first at start, the next at a reload."""

    def build(config: ProxyConfig, before: Snapshot | None) -> Snapshot:
        router = config.router()
        # Verified as open_upstream_pool does; built first, since a CA file may fail.
        contexts = {u.origin: _verifying(u.ca) for u in router.upstreams if u.ca}
        balancer = Balancer(
            config.cooldown_s,
            metrics.upstream_inflight,
            router.upstreams,
            run_dir,
            after=before.balancer if before else None,
        )
        keys = config.keys()
        limiter = KeyLimiter(keys, run_dir, after=before.limiter if before else None)
        relay: ASGIApp = Relay(config, pool, balancer)
        if keys:
            relay = with_keys(relay, keys, limiter)

        def cors(app: ASGIApp) -> ASGIApp:
            return with_cors(app, config.cors_origins) if config.cors_origins else app

        # With a metrics key, the admin key opens /metrics too; without one, /metrics is
        # open (Prometheus's way), even with an admin key: a scraper set up before keeps working.
        metrics_keys = {config.metrics_key, config.admin_key} if config.metrics_key else set()
        if before is not None:  # the upstreams that went close as they come back idle
            pool.reconfigure(frozenset(u.origin for u in router.upstreams), contexts)
            metrics.configure_models(_plain_models(router))
        return Snapshot(
            config=config,
            api=cors(relay),
            public=cors(control),
            admin_keys=frozenset({config.admin_key.encode()}) if config.admin_key else frozenset(),
            metrics_keys=frozenset(k.encode() for k in metrics_keys if k),
            balancer=balancer,
            limiter=limiter,
        )

    return build


def _with_headers(app: ASGIApp, extra: tuple[tuple[bytes, bytes], ...]) -> ASGIApp:
    async def marked(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await app(scope, receive, send_marked)

    return marked


def open_upstream_pool(config: ProxyConfig) -> UpstreamPool:
    """The upstream connections, verified against the upstream's own ``ca``, else
    ``--upstream-ca``, else certifi's CAs."""
    own = {u.origin: _verifying(u.ca) for u in config.router().upstreams if u.ca}
    return UpstreamPool(_verifying(config.upstream_ca), ssl_contexts=own)


def _grace_over(cluster: Cluster) -> None:
    """The shutdown's grace period is over: the requests still relayed are stopped,
    each answered (503, an SSE error event) before the server closes its connection."""
    if stopped := cluster.inflight.shut_down():
        log.warning(
            "grace period over: %d requests stopped, each told the proxy is stopping", stopped
        )


def _verifying(cafile: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile or certifi.where())


async def serve_proxy(
    proxy: ProxyConfig,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    stop_now_trigger: Callable[[], Awaitable[None]] | None = None,
    reload_trigger: Callable[[], Awaitable[str]] | None = None,
    settings_file: SettingsFile | None = None,
    run_dir: str | None = None,
    tracing: Tracing | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until the trigger (``stop_now_trigger``: the grace period ends at once);
    reload ``settings_file`` each time ``reload_trigger`` returns (it says why);
    ``run_dir`` joins the other workers of one server; ``tracing``: None traces as
    the ``OTEL_*`` variables say (:mod:`.admin.traces`)."""
    pool = open_upstream_pool(proxy)
    tracing = tracing if tracing is not None else open_tracing()
    try:
        app, cluster, live = build_app(proxy, pool, run_dir, tracing, settings_file)
        async with trio.open_nursery() as nursery:
            await nursery.start(cluster.serve)
            if reload_trigger is not None:
                nursery.start_soon(_reload_on, reload_trigger, live)
            await serve_app(
                app,
                config,
                shutdown_trigger=shutdown_trigger,
                grace_over=partial(_grace_over, cluster),
                stop_now_trigger=stop_now_trigger,
                task_status=task_status,
            )
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await pool.aclose()
            if tracing is not None:
                await tracing.aclose()


async def _reload_on(trigger: Callable[[], Awaitable[str]], live: Live) -> None:
    while True:
        live.reload(await trigger())
