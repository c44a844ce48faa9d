"""The assembler of ``stream_upstream`` (relay/assemble.py) and the body it sends
upstream (relay/streamed.py), without sockets: any split of any stream the
simulator writes assembles to the simulator's own whole answer; bad streams
are refused with an AssemblyError; the body asks for a stream and keeps the rest."""

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.proxy.relay.assemble import MAX_CHOICES, MAX_TOOL_CALLS, Assembler, AssemblyError
from trioproxy.proxy.relay.streamed import streamed_body
from trioproxy.sim.render import Render

renders = st.builds(
    Render,
    kind=st.sampled_from(["chat", "completion"]),
    model=st.just("m"),
    request_id=st.just("id-1"),
    include_usage=st.booleans(),
    choices=st.integers(1, 3),
    logprobs=st.none() | st.integers(0, 2),
    tools=st.lists(st.sampled_from(["get_weather", "search", "ç"]), max_size=2).map(tuple),
    refuse=st.booleans(),
)


def _interleaved(stream: bytes, rng: random.Random) -> list[bytes]:
    """The stream's events with the choices' chunks interleaved at random, each
    choice's own in order (as an engine may send them); usage and [DONE] last."""
    events = [e + b"\n\n" for e in stream.split(b"\n\n") if e]
    by_choice: dict[int, list[bytes]] = {}
    last = []
    for event in events:
        data = event.removeprefix(b"data: ").strip()
        choices = json.loads(data).get("choices") if data != b"[DONE]" else None
        if choices:
            by_choice.setdefault(choices[0]["index"], []).append(event)
        else:
            last.append(event)
    order = [c for c, chunks in by_choice.items() for _ in chunks]
    rng.shuffle(order)
    return [by_choice[c].pop(0) for c in order] + last


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(
    render=renders,
    tokens=st.integers(0, 8),
    seed=st.integers(0, 2**32),
    cuts=st.lists(st.integers(0, 10**6), max_size=12),
    crlf=st.booleans(),
)
def test_any_split_of_a_stream_assembles_to_the_whole_answer(
    render: Render, tokens: int, seed: int, cuts: list[int], crlf: bool
) -> None:
    stream = b"".join(_interleaved(render.stream(tokens), random.Random(seed)))
    if crlf:
        stream = stream.replace(b"\n", b"\r\n")
    assembler = Assembler(render.kind)  # type: ignore[arg-type]
    for piece in _cut(stream, cuts):
        assembler.feed(piece)
    answer = json.loads(assembler.answer())
    whole = json.loads(render.whole(tokens))
    if not render.include_usage:
        del whole["usage"]  # a stream has usage only when asked (stream_upstream always asks)
    assert answer == whole


def _chunk(choices: list[dict[str, Any]], **top: Any) -> bytes:
    return b"data: " + json.dumps({"id": "x", "choices": choices, **top}).encode() + b"\n\n"


def _assembled(*events: bytes, kind: str = "chat") -> dict[str, Any]:
    assembler = Assembler(kind)  # type: ignore[arg-type]
    for event in events:
        assembler.feed(event)
    return dict(json.loads(assembler.answer()))


def test_tool_calls_are_put_together_by_index_and_other_fields_kept() -> None:
    answer = _assembled(
        _chunk([{"index": 0, "delta": {"role": "assistant", "content": None}}], created=1),
        _chunk(
            [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 1, "id": "b", "type": "function", "function": {"name": "g"}},
                            {"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}},
                        ]
                    },
                }
            ]
        ),
        _chunk(
            [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}}]
        ),
        _chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls", "stop_reason": 7}]),
        _chunk([], usage={"total_tokens": 3}, timings={"n": 1}, system_fingerprint="fp"),
        b"data: [DONE]\n\n",
    )
    assert answer == {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": None,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "a",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        },
                        {
                            "id": "b",
                            "type": "function",
                            "function": {"name": "g", "arguments": None},
                        },
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
                "stop_reason": 7,
            }
        ],
        "usage": {"total_tokens": 3},
        "timings": {"n": 1},
        "system_fingerprint": "fp",
    }


def test_reasoning_and_a_legacy_function_call_are_concatenated() -> None:
    answer = _assembled(
        _chunk(
            [{"index": 0, "delta": {"reasoning_content": "th", "function_call": {"name": "f"}}}]
        ),
        _chunk([{"index": 0, "delta": {"reasoning_content": "ink"}}]),
        _chunk([{"index": 0, "delta": {"function_call": {"arguments": "{}"}}}]),
        _chunk([{"index": 0, "delta": {}, "finish_reason": "function_call"}]),
    )  # no [DONE]: every choice finished is an end too
    message = answer["choices"][0]["message"]
    assert message["reasoning_content"] == "think"
    assert message["function_call"] == {"name": "f", "arguments": "{}"}


def test_what_follows_done_comments_and_event_names_change_nothing() -> None:
    answer = _assembled(
        b": a comment\nevent: message\nid: 4\nretry: 10\n",
        b'data: {"choices":[{"index":0,"text":"a',
        b'","finish_reason":"length"}]}\r\r',
        b"data: [DONE]\n\ndata: not json\n\n",
        kind="completion",
    )
    assert answer["choices"] == [
        {"index": 0, "text": "a", "logprobs": None, "finish_reason": "length"}
    ]


@pytest.mark.parametrize(
    ("events", "words"),
    [
        ([b"data: {nope\n\n"], "not JSON"),
        ([b"data: [1]\n\n"], "not a JSON object"),
        ([b'data: {"choices": {}}\n\n'], "choices that are not a list"),
        ([b'data: {"choices": [7]}\n\n'], "a choice that is not an object"),
        ([_chunk([{"index": MAX_CHOICES}])], "choice index"),
        ([_chunk([{"index": True}])], "choice index"),
        ([_chunk([{"index": -1}])], "choice index"),
        ([_chunk([{"delta": "x"}])], "delta that is not an object"),
        ([_chunk([{"delta": {"tool_calls": [{"index": MAX_TOOL_CALLS}]}}])], "tool call index"),
        ([_chunk([{"delta": {"tool_calls": {}}}])], "tool_calls that are not a list"),
        ([_chunk([{"logprobs": 3}])], "logprobs"),
        ([b'event: error\ndata: {"error": {"message": "out of memory"}}\n\n'], "out of memory"),
        ([b'data: {"error": {"message": "bad\\nthing"}}\n\n'], "bad\\x0athing"),
        ([b'error: {"code": 500, "message": "llama"}\n\n'], "llama"),
        ([_chunk([{"delta": {"content": "x"}}])], "ended before the answer was whole"),
        ([], "ended before the answer was whole"),
    ],
)
def test_a_stream_that_is_no_answer_is_an_assembly_error(events: list[bytes], words: str) -> None:
    with pytest.raises(AssemblyError, match=None) as caught:
        _assembled(*events)
    assert words in str(caught.value)


def test_the_bytes_fed_are_bounded() -> None:
    assembler = Assembler("chat", max_bytes=100)
    assembler.feed(b"x" * 100)  # a line with no end is held as parts, not joined each time
    with pytest.raises(AssemblyError, match="passed 100 bytes"):
        assembler.feed(b"x")


def test_a_long_line_in_small_reads_is_joined_once() -> None:
    text = "y" * 200_000
    data = _chunk([{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}])
    assembler = Assembler("chat")
    for at in range(0, len(data), 7):
        assembler.feed(data[at : at + 7])
    assert json.loads(assembler.answer())["choices"][0]["message"]["content"] == text


@pytest.mark.parametrize(
    ("body", "sent"),
    [
        (b'{"model": "m", "messages": []}', b'{"model": "m", "messages": []' + b",%s}"),
        (b'  {"model":"m"} \n', b'  {"model":"m"' + b",%s}"),
        (b"{}", b"{%s}"),
        (b"{ }", b"{%s}"),
    ],
)
def test_a_body_without_stream_keeps_its_bytes_and_gains_the_two_fields(
    body: bytes, sent: bytes
) -> None:
    asked = b'"stream":true,"stream_options":{"include_usage":true}'
    assert streamed_body(body) == sent % asked
    assert json.loads(sent % asked)["stream"] is True


@pytest.mark.parametrize(
    "request_",
    [
        {"model": "m", "stream": False, "n": 2},
        {"model": "m", "stream": None, "stream_options": {"continuous_usage_stats": True}},
        {"model": "m", "stream_options": None, "best_of": 1},
    ],
)
def test_a_body_saying_stream_is_written_anew_with_every_other_field(
    request_: dict[str, Any],
) -> None:
    body = streamed_body(json.dumps(request_).encode())
    assert body is not None
    sent = json.loads(body)
    options = request_.get("stream_options") or {}
    assert sent == request_ | {"stream": True, "stream_options": options | {"include_usage": True}}


def test_a_body_in_utf16_is_written_anew() -> None:
    body = streamed_body(json.dumps({"model": "m"}).encode("utf-16"))
    assert body is not None and json.loads(body) == {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    "body",
    [
        b'{"stream": true}',
        b'{"stream": "yes"}',
        b'{"stream": 0}',
        b'{"best_of": 3}',
        b'{"stream_options": 5}',
        b"[1]",
        b"not json",
        b"",
        b"[" * 100_000,
    ],
)
def test_a_body_that_cannot_or_need_not_be_asked_as_a_stream_goes_as_it_came(body: bytes) -> None:
    assert streamed_body(body) is None
