"""``stream_upstream`` against a real engine: the same non-streaming request asked
of the engine directly and through a proxy that asks it for a stream and
assembles the answer. Greedy decoding with a seed makes the two answers the
same but for what differs between any two requests (ids, times), and for
fields whose value is null: an engine's JSON answer may name fields its stream
never carries (vLLM's ``service_tier``, ``kv_transfer_params``, a message's
``annotations``...), null in every answer, absent from the assembled one."""

import json
import math
from typing import Any

import httpx
import trio

from tests.helpers.proxy import start_proxy
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.upstream.routing import Upstream

__all__ = ["ENGINE_REQUESTS", "Refused", "both_answers", "comparable", "same"]

_VARYING = ("id", "created", "timings")
"""Fields that differ between any two requests: ids, clocks, llama.cpp's timings."""
_VARYING_USAGE = ("prompt_tokens_details",)
"""Its ``cached_tokens`` depend on what the engine's prompt cache holds."""

ENGINE_REQUESTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("/chat/completions", {"messages": [{"role": "user", "content": "Tell me a story."}]}),
    (
        "/chat/completions",
        {
            "messages": [{"role": "user", "content": "Count."}],
            "n": 2,
            "temperature": 1.0,  # several choices are sampled (vLLM: greedy needs n = 1)
            "logprobs": True,
            "top_logprobs": 2,
        },
    ),
    ("/completions", {"prompt": "Once upon a time", "logprobs": 2}),
    ("/completions", {"prompt": "One, two,", "n": 2, "temperature": 1.0}),
)
"""Chat completions and completions, one choice and two, logprobs and none; each
with a seed, so that a sampled answer is the same twice."""


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` without the fields that differ between two requests, nor null ones."""
    kept = {k: v for k, v in answer.items() if k not in _VARYING}
    if isinstance(kept.get("usage"), dict):
        kept["usage"] = {k: v for k, v in kept["usage"].items() if k not in _VARYING_USAGE}
    return dict(_non_null(kept))


def same(one: Any, other: Any) -> bool:
    """Equal, but for floats within 1e-3: an engine's logprobs differ in their last
    digits from one run to the next (vLLM on CPU with ``n`` = 2)."""
    if isinstance(one, float) and isinstance(other, float):
        return math.isclose(one, other, rel_tol=1e-3, abs_tol=1e-3)
    if isinstance(one, dict) and isinstance(other, dict):
        return one.keys() == other.keys() and all(same(one[k], other[k]) for k in one)
    if isinstance(one, list) and isinstance(other, list):
        return len(one) == len(other) and all(same(a, b) for a, b in zip(one, other, strict=True))
    return bool(one == other)


def _non_null(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _non_null(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_non_null(v) for v in value]
    return value


class Refused(Exception):
    """The engine refused the request itself, and the proxy relayed its refusal."""


async def both_answers(
    nursery: trio.Nursery, engine_url: str, model: str, path: str, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine's own non-streaming answer to ``body`` at ``path`` (under its base
    URL, ``.../v1``), and the one a ``stream_upstream`` proxy assembled; :class:`Refused`
    when the engine answers the request with an error, as it does through the proxy."""
    config = ProxyConfig(
        upstream=engine_url, upstreams=(Upstream("engine", engine_url, stream_upstream=True),)
    )
    proxy = await start_proxy(nursery, config)
    request = {"model": model, "max_tokens": 24, "temperature": 0, "seed": 1} | body
    async with httpx.AsyncClient(timeout=120) as client:
        direct = await client.post(engine_url + path, json=request)
        assembled = await client.post(proxy + "/v1" + path, json=request)
    if direct.status_code != 200:  # a request this engine refuses (llama.cpp: n > 1)
        assert assembled.status_code == direct.status_code, assembled.text
        raise Refused(direct.text[:200])
    assert assembled.status_code == 200, assembled.text
    assert assembled.headers["content-type"] == "application/json"
    return json.loads(direct.content), json.loads(assembled.content)
