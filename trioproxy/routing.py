"""Which upstream serves a request: by the JSON ``model``, exact names before globs."""

import fnmatch
from dataclasses import dataclass

__all__ = ["Router", "Upstream"]


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str
    """OpenAI-style base URL: ``/v1/chat/completions`` goes to ``{url}/chat/completions``."""
    key: str | None = None
    """Replaces the client's ``Authorization``; never logged."""
    models: tuple[str, ...] = ("*",)
    """Exact names and globs (``gpt-4o-*``)."""
    fallback: tuple[str, ...] = ()
    """Upstreams tried, in order, when this one cannot be reached or answers 5xx."""

    def url_for(self, raw_path: bytes, query: bytes) -> str:
        # raw_path keeps the client's percent-encoding byte for byte.
        tail = raw_path[len(b"/v1") :].decode("latin-1")
        url = self.url.rstrip("/") + tail
        return f"{url}?{query.decode('latin-1')}" if query else url

    def __repr__(self) -> str:  # the key stays out of every log and traceback
        return f"Upstream({self.name!r}, {self.url!r})"


class Router:
    def __init__(self, upstreams: tuple[Upstream, ...]) -> None:
        self.upstreams = upstreams
        self.by_name = {u.name: u for u in upstreams}
        self._exact = {m: u for u in upstreams for m in u.models if not _is_glob(m)}
        self._globs = [(m, u) for u in upstreams for m in u.models if _is_glob(m)]

    @property
    def needs_model(self) -> bool:
        """False when every request goes to the one upstream whatever its model."""
        return len(self.upstreams) > 1 or self.upstreams[0].models != ("*",)

    @property
    def default(self) -> Upstream:
        return self.upstreams[0]

    def route(self, model: str) -> Upstream | None:
        found = self._exact.get(model)
        if found is not None:
            return found
        return next((u for pattern, u in self._globs if fnmatch.fnmatchcase(model, pattern)), None)

    def chain(self, first: Upstream) -> list[Upstream]:
        """``first`` and then its fallbacks."""
        return [first, *(self.by_name[name] for name in first.fallback)]


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")
