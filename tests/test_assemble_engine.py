"""``stream_upstream`` against a real engine already running (vLLM, llama.cpp's
server, llama-cpp-python's): the assembled answer has every field of the
engine's own non-streaming answer, equal but for ids and clocks (and fields
null in the engine's answer that its stream never carries).

Skipped unless ``TRIOPROXY_ENGINE_URL`` names the engine's base URL
(``http://127.0.0.1:8001/v1``); ``TRIOPROXY_ENGINE_MODEL`` is the model name it
serves (default ``tiny-llama``). The check itself is ``tests.helpers.assembled``,
for the engines' own tests to call with the engines they start."""

import os
from typing import Any

import pytest
import trio

from tests.helpers.assembled import ENGINE_REQUESTS, Refused, both_answers, comparable, same

ENGINE_URL = os.environ.get("TRIOPROXY_ENGINE_URL", "")
MODEL = os.environ.get("TRIOPROXY_ENGINE_MODEL", "tiny-llama")

pytestmark = pytest.mark.skipif(not ENGINE_URL, reason="TRIOPROXY_ENGINE_URL is not set")


@pytest.mark.parametrize(("path", "body"), ENGINE_REQUESTS)
async def test_the_assembled_answer_is_the_engines_own(
    nursery: trio.Nursery, path: str, body: dict[str, Any]
) -> None:
    try:
        with trio.fail_after(300):
            direct, assembled = await both_answers(nursery, ENGINE_URL, MODEL, path, body)
    except Refused as exc:
        pytest.skip(f"the engine refuses this request, through the proxy too: {exc}")
    given = {k for k, v in direct.items() if v is not None}
    assert given <= set(assembled), "a field of the engine's answer is missing"
    assert same(comparable(assembled), comparable(direct)), (assembled, direct)
