"""What an engine reports about its own work: Prometheus counters from its
``/metrics`` and abort lines from its log.

vLLM counts generated tokens per engine step (``vllm:generation_tokens_total``)
and logs "Request ID aborted." when a client's disconnect reaches it (with
``--enable-log-requests``). llama-server counts its decode calls as it makes
them (``llamacpp:n_decode_total``, one per generated token when one request
runs) and logs "cancel task" when it drops a task."""

import re
from dataclasses import dataclass

import httpx

__all__ = ["Counters", "metric_sum", "read_counters"]

# Tokens the engine has generated, as counted while it generates.
_GENERATED = {"vllm": "vllm:generation_tokens_total", "llama.cpp": "llamacpp:n_decode_total"}
_RUNNING = {"vllm": "vllm:num_requests_running", "llama.cpp": "llamacpp:requests_processing"}


def metric_sum(text: str, name: str) -> float:
    """The sum of every series of ``name`` in a Prometheus text exposition."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", re.MULTILINE)
    values = [float(v) for v in pattern.findall(text)]
    if not values:
        raise LookupError(f"{name} is not in the metrics")
    return sum(values)


@dataclass(frozen=True)
class Counters:
    generated: int  # tokens generated so far, all requests together
    running: int  # requests being worked on now


async def read_counters(client: httpx.AsyncClient, engine: str, origin: str) -> Counters:
    text = (await client.get(f"{origin}/metrics")).text
    return Counters(
        generated=int(metric_sum(text, _GENERATED[engine])),
        running=int(metric_sum(text, _RUNNING[engine])),
    )
