"""Which upstream serves a request: by the JSON ``model``, exact names before globs.

Upstreams with the same model list are replicas of one another: the
forwarder balances a request among them (:mod:`trioproxy.proxy.upstream.balance`).

When requests are routed by model, a request that names none (``GET
/v1/files``, a body without ``"model"``) goes to the first upstream that
lists the catch-all ``*``, the one that would take any name; without one it
is refused, never sent to whichever upstream happens to come first. The
router also says which models ``GET /v1/models`` may list: the same rules,
read the other way (:meth:`Router.serves`).
"""

import fnmatch
from dataclasses import dataclass, field

import httpx

from trioproxy.proxy.core.bounded import MODEL_MAX, UPSTREAM_NAME_MAX
from trioproxy.proxy.upstream.conventions import Conventions
from trioproxy.proxy.upstream.pool import Origin

__all__ = ["Router", "Upstream"]


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str
    """OpenAI-style base URL: ``/v1/chat/completions`` goes to ``{url}/chat/completions``."""
    key: str | None = None
    """Replaces the client's credentials; never logged."""
    models: tuple[str, ...] = ("*",)
    """Exact names and globs (``gpt-4o-*``)."""
    fallback: tuple[str, ...] = ()
    """Upstreams tried, in order, when this one cannot be reached or answers 5xx."""
    ca: str | None = None
    """PEM bundle this upstream's TLS is verified with; None: ``--upstream-ca`` or certifi's."""
    key_header: str = "authorization"
    """Where ``key`` goes: ``Authorization: Bearer KEY``, else this header with the key alone."""
    headers: tuple[tuple[str, str], ...] = ()
    """Sent with every request, in place of the client's headers of these names; never logged."""
    query: tuple[tuple[str, str], ...] = ()
    """Added to every request's query, in place of the client's parameters of these names."""
    stream_upstream: bool = False
    """A client's non-streaming chat completion or completion is asked of this upstream
    as a stream and answered assembled (:mod:`trioproxy.proxy.relay.streamed`)."""
    conventions: Conventions = field(init=False, compare=False)
    """All of the above, checked, as the bytes each request adds."""
    origin: Origin = field(init=False, compare=False)
    """Scheme, host and port: from the configuration only, never from a client."""
    base_path: bytes = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.name) > UPSTREAM_NAME_MAX:  # it is in every log line and listing entry
            raise ValueError(f"name over {UPSTREAM_NAME_MAX} characters")
        if too_long := [m for m in self.models if len(m) > MODEL_MAX]:
            # A client's model is kept to MODEL_MAX characters: such a name could never match.
            raise ValueError(f"model name over {MODEL_MAX} characters: {too_long[0][:40]!r}...")
        origin, base = _parse_base(self.url)
        conventions = Conventions.of(self.key, self.key_header, self.headers, self.query)
        object.__setattr__(self, "conventions", conventions)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "base_path", base)

    def target_for(self, tail: bytes, query: bytes) -> bytes:
        """The request target upstream for a client path's ``tail`` (checked by
        :func:`trioproxy.proxy.relay.paths.client_tail`, so it starts with ``/``) and query:
        the base path, joined as bytes, never parsed again."""
        target = self.base_path + tail
        query = self.conventions.merged_query(query)
        return target + b"?" + query if query else target

    def __repr__(self) -> str:  # the key stays out of every log and traceback
        return f"Upstream({self.name!r}, {self.url!r})"


def _parse_base(url: str) -> tuple[Origin, bytes]:
    """Split a configured base URL; ValueError names what is wrong with it."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"invalid upstream URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"upstream URL {url!r} must be http:// or https:// with a host")
    if parsed.userinfo or parsed.query or parsed.fragment:
        raise ValueError(f"upstream URL {url!r} must have no credentials, query or fragment")
    port = port or (443 if parsed.scheme == "https" else 80)
    return (parsed.scheme, parsed.host, port), parsed.raw_path.rstrip(b"/")


class Router:
    def __init__(self, upstreams: tuple[Upstream, ...]) -> None:
        self.upstreams = upstreams
        self.by_name = {u.name: u for u in upstreams}
        # The first upstream to claim a name stands for it and its replicas.
        self._exact: dict[str, Upstream] = {}
        for upstream in upstreams:
            for model in upstream.models:
                if not _is_glob(model):
                    self._exact.setdefault(model, upstream)
        self._globs = [(m, u) for u in upstreams for m in u.models if _is_glob(m)]
        self._replicas = {
            u.name: tuple(r for r in upstreams if r.models == u.models) for u in upstreams
        }

    @property
    def needs_model(self) -> bool:
        """False when every request goes to the one upstream whatever its model."""
        return len(self.upstreams) > 1 or self.upstreams[0].models != ("*",)

    @property
    def default(self) -> Upstream:
        return self.upstreams[0]

    @property
    def for_no_model(self) -> Upstream | None:
        """Where a request that names no model goes: with routing by model, the first
        upstream listing ``*``, else None (the request is refused); else the one upstream."""
        if not self.needs_model:
            return self.default
        return next((u for u in self.upstreams if "*" in u.models), None)

    def exact_names(self) -> list[tuple[str, Upstream]]:
        """Every exact model name, in configured order, with the upstream it routes to."""
        return list(self._exact.items())

    def wildcards(self) -> list[Upstream]:
        """The upstreams with a glob: which names they take, only they can say."""
        return [u for u in self.upstreams if any(_is_glob(m) for m in u.models)]

    def serves(self, upstream: Upstream, model: str) -> bool:
        """A request for ``model`` is routed to ``upstream`` or one of its replicas: the
        test a name an upstream reports must pass to be listed."""
        found = self.route(model)
        return found is not None and found.models == upstream.models

    def route(self, model: str) -> Upstream | None:
        """The upstream for ``model``; None when none serves it.

        A name over :data:`MODEL_MAX` characters is served by none, not even a
        glob: the proxy keeps no more of it, so a cut name never matches by accident.
        """
        if len(model) > MODEL_MAX:
            return None
        found = self._exact.get(model)
        if found is not None:
            return found
        return next((u for pattern, u in self._globs if fnmatch.fnmatchcase(model, pattern)), None)

    def replicas(self, upstream: Upstream) -> tuple[Upstream, ...]:
        """``upstream`` and every other serving the same models, in configured order."""
        return self._replicas[upstream.name]

    def chain(self, first: Upstream) -> list[Upstream]:
        """``first`` and then its fallbacks."""
        return [first, *(self.by_name[name] for name in first.fallback)]


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")
