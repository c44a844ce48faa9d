"""Whole answers: the text the simulator sends, read back from an event stream or
a JSON answer, and the integrity scenario that checks unstopped answers arrive whole."""

import json

import httpx
import trio

from trioproxy.conformance.probe import chat_body, sim_model
from trioproxy.conformance.proxy_process import Target
from trioproxy.conformance.report import RunConfig, ScenarioResult
from trioproxy.sim import token_text

__all__ = ["expected_text", "integrity", "json_text", "stream_text"]


async def integrity(target: Target, config: RunConfig) -> ScenarioResult:
    """Unstopped streams and JSON answers, concurrently, must arrive whole and in order."""
    result = ScenarioResult("integrity (whole answers)")
    base = f"http://{target[0]}:{target[1]}"

    async def one(client: httpx.AsyncClient, i: int, stream: bool) -> None:
        settings = {
            "x-sim-id": f"whole-{i}-{stream}",
            "x-sim-tokens": "200",
            "x-sim-interval": "0.001",
        }
        response = await client.post(
            "/v1/chat/completions",
            content=chat_body(stream, model=sim_model(settings)),
            headers={"content-type": "application/json", **settings},
        )
        result.checked += 1
        # Content, not bytes: a proxy may re-encode the JSON it relays.
        got = stream_text(response.content) if stream else json_text(response.content)
        if response.status_code != 200 or got != expected_text(200):
            result.failures.append(
                f"{settings['x-sim-id']}: status {response.status_code}, "
                f"{len(got or '')} of {len(expected_text(200))} characters"
            )

    try:
        with trio.fail_after(60):
            async with (
                httpx.AsyncClient(base_url=base, timeout=30) as client,
                trio.open_nursery() as nursery,
            ):
                for i in range(config.integrity_streams):
                    nursery.start_soon(one, client, i, i % 2 == 0)
    except (httpx.HTTPError, trio.TooSlowError) as exc:
        result.failures.append(repr(exc))
    return result


def expected_text(tokens: int) -> str:
    return "".join(token_text(i) for i in range(tokens))


def stream_text(body: bytes) -> str | None:
    """The text a chat event stream carries, or None unless it ends with ``[DONE]``."""
    data = [
        line[6:] for line in body.decode(errors="replace").splitlines() if line.startswith("data: ")
    ]
    if not data or data[-1] != "[DONE]":
        return None
    try:
        chunks = [json.loads(d) for d in data[:-1]]
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
        )
    except (ValueError, LookupError, TypeError, AttributeError):
        return None


def json_text(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["choices"][0]["message"]["content"])
    except (ValueError, LookupError, TypeError):  # not the chat completion it should be
        return None
