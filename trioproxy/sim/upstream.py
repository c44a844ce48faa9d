"""The simulated upstream: an OpenAI-compatible model server that keeps a record.

Served by hypercorn's trio worker like the proxy, it answers
``/v1/chat/completions``, ``/v1/completions`` and Anthropic-style
``/v1/messages`` (streaming or not) and ``GET /v1/models``. Each request's
timing comes from ``x-sim-*`` headers, falling back to :class:`SimParams`:

==========================  ==============================================
``x-sim-headers-delay``      seconds before response headers (queue, prompt)
``x-sim-first-token-delay``  seconds after headers before the first token
``x-sim-tokens``             tokens to generate (else ``max_tokens``)
``x-sim-interval``           seconds between tokens
``x-sim-id``                 the caller's name for the request, for its fate
``x-sim-fail``               ``500``: answer 500; ``drop``: cut the
                             connection after the tokens, no end of stream
``x-sim-refuse``             ``1``: a chat answer is a ``refusal``
==========================  ==============================================

The body's ``n``, ``logprobs`` (and ``top_logprobs``) and ``tools`` shape
the answer as an engine's (:class:`~trioproxy.sim.render.Render`).

The same settings may come in the query string (``?sim-tokens=5``; a
``GET`` with ``stream=true`` streams a chat completion: an ``EventSource``
can send neither headers nor a body) or in the model name
(``sim-small;id=a;tokens=5``: for proxies that rebuild requests).

Each request's :class:`Fate` says whether it completed or the peer
disconnected, when (``time.monotonic()``, comparable across processes on one
machine) and after how many tokens. The upstream notices a disconnect the way
the proxy does: a watcher blocked on ``receive()``. The time of a hang-up is
the moment the server's hang-up watcher saw it (``CLIENT_HANGUP``), from its
own thread: a checker whose loop is busy with a storm's thousand clients
would otherwise time its own batches, not the proxy.
"""

import contextlib
import hashlib
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import trio

from trioproxy.asgi import (
    CLIENT_HANGUP,
    Hangup,
    Message,
    Receive,
    Scope,
    Send,
    disconnected,
    send_json,
)
from trioproxy.sim.render import CREATED, MODELS, Render, render_for

__all__ = ["Fate", "SimParams", "SimUpstream"]


@dataclass(frozen=True, slots=True)
class SimParams:
    headers_delay_s: float = 0.0
    first_token_delay_s: float = 0.0
    tokens: int = 16
    interval_s: float = 0.0


@dataclass
class Fate:
    """What became of one request at the simulated upstream."""

    sim_id: str
    path: str
    http_version: str
    started_at: float
    headers_at: float | None = None
    tokens_sent: int = 0
    bytes_sent: int = 0
    outcome: str = "running"  # "completed" | "disconnected" | "dropped"
    ended_at: float | None = None
    hung_up_at: float | None = None
    """When the server's watcher thread saw the peer's connection hang up."""
    sha256: str = ""
    stream: bool = False
    """The request asked for an event stream."""
    request_headers: dict[str, str] = field(default_factory=dict)
    started: trio.Event = field(default_factory=trio.Event, repr=False)
    ended: trio.Event = field(default_factory=trio.Event, repr=False)
    _progress: trio.Event = field(default_factory=trio.Event, repr=False)

    def as_json(self) -> dict[str, Any]:
        hidden = ("started", "ended", "_progress")
        return {k: v for k, v in asdict(self).items() if k not in hidden}

    def sent(self, *, headers: bool = False, tokens: int | None = None) -> None:
        """Record progress, waking whoever waits for it."""
        if headers:
            self.headers_at = time.monotonic()
        if tokens is not None:
            self.tokens_sent = tokens
        self._progress.set()
        self._progress = trio.Event()

    async def wait_progress(self, *, tokens: int = 0) -> None:
        """Wait until headers were sent and ``tokens`` tokens after them."""
        while self.headers_at is None or self.tokens_sent < tokens:
            await self._progress.wait()


class _Dropped(Exception):
    """Raised inside the generator to cut the connection mid-answer."""


class SimUpstream:
    """The ASGI app of the simulated upstream, with the fate of every request."""

    def __init__(self, defaults: SimParams | None = None) -> None:
        self.defaults = defaults or SimParams()
        self._fates: dict[str, Fate] = {}
        self._ids = (f"sim-{n}" for n in itertools.count(1))

    @property
    def fates(self) -> list[Fate]:
        return [fate for fate in self._fates.values() if fate.path]

    def fate(self, sim_id: str) -> Fate:
        """The fate of ``sim_id``, created empty if the request has not arrived yet."""
        fate = self._fates.get(sim_id)
        if fate is None:
            fate = self._fates[sim_id] = Fate(sim_id, "", "", 0.0)
        return fate

    async def wait_started(self, sim_id: str) -> Fate:
        fate = self.fate(sim_id)
        await fate.started.wait()
        return fate

    async def wait_ended(self, sim_id: str) -> Fate:
        fate = self.fate(sim_id)
        await fate.ended.wait()
        return fate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["path"] == "/v1/models":
            await _send_json(send, 200, _models())
        elif scope["path"] == "/sim/fates":
            await _send_json(send, 200, {"fates": [f.as_json() for f in self.fates]})
        else:
            await self._generate(scope, receive, send)

    async def _generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Named by a header, a request is on record from its first byte, so a
        # proxy that streams a body upstream and then abandons it is seen.
        early = dict(scope["headers"]).get(b"x-sim-id")
        hangup: Hangup | None = scope.get(CLIENT_HANGUP)
        if early is not None:
            self._start(self.fate(early.decode()), scope, {}, hangup)
        try:
            await self._serve(scope, receive, send, early, hangup)
        finally:
            if hangup is not None:
                hangup.disarm()

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, early: bytes | None, hangup: Hangup | None
    ) -> None:
        body = await _read_body(receive)
        if body is None:
            if early is not None:
                _end(self.fate(early.decode()), "disconnected")
            return
        try:
            request = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            request = {}
        if not isinstance(request, dict):
            request = {}
        query = dict(parse_qsl(scope["query_string"].decode()))
        if scope["method"] == "GET":
            request = {"stream": query.get("stream") == "true"}
        headers = _settings(scope["headers"], query, request)
        fate = self.fate(headers.get("x-sim-id") or next(self._ids))
        if early is None:
            self._start(fate, scope, headers, hangup)
        fate.request_headers = headers
        refuse = headers.get("x-sim-refuse") == "1"
        render = render_for(scope["path"], request, f"{fate.sim_id}", refuse)
        if render is None:
            _end(fate, "completed")
            return await _send_json(send, 404, {"error": {"message": "no such endpoint"}})
        params = self._params(headers, request)
        digest = hashlib.sha256()

        async def emit(data: bytes, more: bool = True) -> None:
            digest.update(data)
            fate.bytes_sent += len(data)
            await send({"type": "http.response.body", "body": data, "more_body": more})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch, receive, nursery.cancel_scope, fate)
            with contextlib.suppress(_Dropped):
                await _answer(render, params, headers, request, fate, send, emit)
            nursery.cancel_scope.cancel()
        fate.sha256 = digest.hexdigest()
        _end(fate, "completed")

    def _start(
        self, fate: Fate, scope: Scope, headers: dict[str, str], hangup: Hangup | None
    ) -> None:
        fate.path, fate.http_version = scope["path"], scope["http_version"]
        fate.request_headers = headers
        fate.started_at = time.monotonic()
        fate.started.set()
        if hangup is not None:

            def hung_up() -> None:  # in the watcher's thread: one assignment, no more
                fate.hung_up_at = time.monotonic()

            hangup.arm(hung_up)

    def _params(self, headers: dict[str, str], request: dict[str, Any]) -> SimParams:
        d = self.defaults
        tokens = headers.get("x-sim-tokens") or request.get("max_tokens") or d.tokens
        return SimParams(
            headers_delay_s=float(headers.get("x-sim-headers-delay", d.headers_delay_s)),
            first_token_delay_s=float(
                headers.get("x-sim-first-token-delay", d.first_token_delay_s)
            ),
            tokens=int(tokens),
            interval_s=float(headers.get("x-sim-interval", d.interval_s)),
        )


async def _answer(
    render: Render,
    p: SimParams,
    headers: dict[str, str],
    request: dict[str, Any],
    fate: Fate,
    send: Send,
    emit: Any,
) -> None:
    await trio.sleep(p.headers_delay_s)
    if headers.get("x-sim-fail") == "500":
        fate.sent(headers=True)
        fate.outcome = "completed"
        return await _send_json(
            send, 500, {"error": {"message": "simulated failure", "type": "server_error"}}
        )
    streaming = fate.stream = bool(request.get("stream", False))
    if not streaming:
        await trio.sleep(p.first_token_delay_s + p.tokens * p.interval_s)
        fate.sent(tokens=p.tokens)
    if not streaming:
        whole = render.whole(p.tokens)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(whole)),
                ],
            }
        )
        fate.sent(headers=True)
        # Marked before the last send: the server's own end of the answer
        # also reaches the watcher as http.disconnect.
        fate.outcome = "completed"
        await emit(whole, more=False)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    fate.sent(headers=True)
    await trio.sleep(p.first_token_delay_s)
    for i in range(p.tokens):
        if i:
            await trio.sleep(p.interval_s)
        await emit((render.head() if i == 0 else b"") + render.token(i))
        fate.sent(tokens=i + 1)
    if headers.get("x-sim-fail") == "drop":
        fate.outcome = "dropped"
        # Returning without the last body message makes hypercorn close the
        # connection: the proxy sees the stream cut, not ended.
        raise _Dropped
    fate.outcome = "completed"
    await emit((b"" if p.tokens else render.head()) + render.tail(p.tokens), more=False)


def _settings(
    raw_headers: list[tuple[bytes, bytes]], query: dict[str, str], request: dict[str, Any]
) -> dict[str, str]:
    """The request's headers, with ``x-sim-*`` settings also taken from the
    model name and the query string; the headers win."""
    settings: dict[str, str] = {}
    model = str(request.get("model", ""))
    if ";" in model:
        # A proxy that rebuilds requests (and drops unknown headers) still
        # passes the model name: "sim-small;id=a;tokens=5". (Not "," or "@":
        # LiteLLM reads a comma-separated model as several models.)
        base, _, options = model.partition(";")
        request["model"] = base
        for option in options.split(";"):
            key, _, value = option.partition("=")
            settings[f"x-sim-{key}"] = value
    settings |= {f"x-{k}": v for k, v in query.items() if k.startswith("sim-")}
    return settings | {name.decode(): value.decode() for name, value in raw_headers}


def _end(fate: Fate, outcome: str) -> None:
    if fate.outcome == "running":
        fate.outcome = outcome
    if fate.ended_at is None:
        hung_up = fate.outcome == "disconnected" and fate.hung_up_at is not None
        fate.ended_at = fate.hung_up_at if hung_up else time.monotonic()
    fate.ended.set()


async def _watch(receive: Receive, scope: trio.CancelScope, fate: Fate) -> None:
    await disconnected(receive)
    if fate.outcome == "running":  # else the answer is ending on its own: let it
        _end(fate, "disconnected")
        scope.cancel()


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _models() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "trioproxy-sim"}
            for m in MODELS
        ],
    }


async def _send_json(send: Send, status: int, obj: Any) -> None:
    await send_json(send, status, json.dumps(obj).encode())


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
