"""What the simulated upstream says: OpenAI- and Anthropic-style payloads.

Pure functions of (endpoint, model, token count), so a test can compute the
exact bytes a stream must carry. Token ``i`` is the text ``"tok{i} "``;
nothing depends on the clock.
"""

import json
from dataclasses import dataclass
from typing import Any, TypeIs

__all__ = ["CREATED", "MODELS", "Render", "render_for", "token_text"]

CREATED = 1_700_000_000
MODELS = ("sim-small", "sim-large")
_PROMPT_TOKENS = 8


def token_text(i: int) -> str:
    return f"tok{i} "


def _data(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _event(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\n" + _data(obj)


def _usage(n: int) -> dict[str, int]:
    return {
        "prompt_tokens": _PROMPT_TOKENS,
        "completion_tokens": n,
        "total_tokens": _PROMPT_TOKENS + n,
    }


@dataclass(frozen=True, slots=True)
class Render:
    """One endpoint's framing. Streams are ``head + token(0..n-1) + tail(n)``.

    A chat or completion answer may have several ``choices`` (the request's
    ``n``), each choice's token ``i`` being ``token_text(i)`` for the first and
    ``"c{c}.tok{i} "`` for the others; ``logprobs`` (the top alternatives asked
    for, None when not asked); chat ``tools``, each a tool call whose arguments
    gather the tokens; or a refusal (``refuse``). The stream and :meth:`whole`
    are written apart, as an engine writes them: a test may hold one to the other.
    """

    kind: str  # "chat" | "completion" | "messages"
    model: str
    request_id: str
    include_usage: bool = False
    choices: int = 1
    logprobs: int | None = None
    tools: tuple[str, ...] = ()
    refuse: bool = False

    @property
    def _calls(self) -> tuple[str, ...]:
        """The tool calls made: none in a refusal."""
        return () if self.refuse else self.tools

    def head(self) -> bytes:
        if self.kind == "chat":
            return b"".join(self._chat_head(c) for c in range(self.choices))
        if self.kind == "messages":
            message: dict[str, Any] = {
                "id": self.request_id,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": self.model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": _PROMPT_TOKENS, "output_tokens": 1},
            }
            return _event("message_start", {"type": "message_start", "message": message}) + _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        return b""

    def token(self, i: int) -> bytes:
        if self.kind == "messages":
            return _event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": token_text(i)},
                },
            )
        if self.kind == "chat":
            return b"".join(self._chat_token(c, i) for c in range(self.choices))
        return b"".join(
            self._completion_chunk(
                c, self._text(c, i), None, self._completion_logprobs(c, i, i + 1)
            )
            for c in range(self.choices)
        )

    def tail(self, n: int) -> bytes:
        if self.kind == "messages":
            return (
                _event("content_block_stop", {"type": "content_block_stop", "index": 0})
                + _event(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": n},
                    },
                )
                + _event("message_stop", {"type": "message_stop"})
            )
        if self.kind == "chat":
            finish = "tool_calls" if self._calls else "stop"
            tail = b""
            for c in range(self.choices):
                for j in range(len(self._calls)):
                    tail += self._chat_chunk(c, {"tool_calls": [_piece(j, '"}')]}, None)
                tail += self._chat_chunk(c, {}, finish)
            base = self._chat_base()
        else:
            tail = b"".join(self._completion_chunk(c, "", "stop") for c in range(self.choices))
            base = self._completion_base()
        if self.include_usage:
            tail += _data(base | {"choices": [], "usage": self._usage(n)})
        return tail + b"data: [DONE]\n\n"

    def whole(self, n: int) -> bytes:
        """The non-streaming answer."""
        if self.kind == "chat":
            obj: dict[str, Any] = self._chat_base() | {
                "object": "chat.completion",
                "choices": [self._chat_choice(c, n) for c in range(self.choices)],
                "usage": self._usage(n),
            }
        elif self.kind == "messages":
            obj = {
                "id": self.request_id,
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "".join(token_text(i) for i in range(n))}],
                "model": self.model,
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": _PROMPT_TOKENS, "output_tokens": n},
            }
        else:
            choices = [
                {
                    "index": c,
                    "text": "".join(self._text(c, i) for i in range(n)),
                    "finish_reason": "stop",
                    "logprobs": self._completion_logprobs(c, 0, n) if n else None,
                }
                for c in range(self.choices)
            ]
            obj = self._completion_base() | {"choices": choices, "usage": self._usage(n)}
        return json.dumps(obj, separators=(",", ":")).encode()

    def stream(self, n: int) -> bytes:
        """The whole event stream at once: what a test expects to receive."""
        return self.head() + b"".join(self.token(i) for i in range(n)) + self.tail(n)

    def _text(self, c: int, i: int) -> str:
        return token_text(i) if c == 0 else f"c{c}.tok{i} "

    def _usage(self, n: int) -> dict[str, int]:
        return _usage(n * self.choices if self.kind != "messages" else n)

    def _chat_base(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": None,
        }

    def _completion_base(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "object": "text_completion",
            "created": CREATED,
            "model": self.model,
        }

    def _chat_chunk(
        self, c: int, delta: dict[str, Any], finish: str | None, logprobs: Any = None
    ) -> bytes:
        choice = {"index": c, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        return _data(self._chat_base() | {"choices": [choice]})

    def _chat_head(self, c: int) -> bytes:
        if self.refuse:
            return self._chat_chunk(c, {"role": "assistant", "content": None, "refusal": ""}, None)
        if not self._calls:
            return self._chat_chunk(c, {"role": "assistant", "content": ""}, None)
        head = self._chat_chunk(c, {"role": "assistant", "content": None}, None)
        for j, name in enumerate(self._calls):
            call = {"index": j, "id": f"call_{c}_{j}", "type": "function"}
            call["function"] = {"name": name, "arguments": '{"text":"'}
            head += self._chat_chunk(c, {"tool_calls": [call]}, None)
        return head

    def _chat_token(self, c: int, i: int) -> bytes:
        text = self._text(c, i)
        if self._calls:
            delta: dict[str, Any] = {"tool_calls": [_piece(i % len(self._calls), text)]}
        else:
            delta = {"refusal" if self.refuse else "content": text}
        logprobs = None
        if self.logprobs is not None:
            logprobs = self._chat_logprobs([self._chat_entry(c, i)])
        return self._chat_chunk(c, delta, None, logprobs)

    def _chat_choice(self, c: int, n: int) -> dict[str, Any]:
        text = "".join(self._text(c, i) for i in range(n))
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if self.refuse:
            message = {"role": "assistant", "content": None, "refusal": text}
        elif self._calls:
            calls = []
            for j, name in enumerate(self._calls):
                pieces = "".join(self._text(c, i) for i in range(j, n, len(self._calls)))
                function = {"name": name, "arguments": '{"text":"' + pieces + '"}'}
                calls.append({"id": f"call_{c}_{j}", "type": "function", "function": function})
            message = {"role": "assistant", "content": None, "tool_calls": calls}
        logprobs = None
        if self.logprobs is not None and n:
            logprobs = self._chat_logprobs([self._chat_entry(c, i) for i in range(n)])
        finish = "tool_calls" if self._calls else "stop"
        return {"index": c, "message": message, "finish_reason": finish, "logprobs": logprobs}

    def _chat_logprobs(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self.refuse:
            return {"content": None, "refusal": entries}
        return {"content": entries, "refusal": None}

    def _chat_entry(self, c: int, i: int) -> dict[str, Any]:
        text, logprob = self._text(c, i), _logprob(c, i)
        top = [
            {"token": f"alt{k}", "logprob": logprob - k - 1, "bytes": list(b"alt%d" % k)}
            for k in range(self.logprobs or 0)
        ]
        return {
            "token": text,
            "logprob": logprob,
            "bytes": list(text.encode()),
            "top_logprobs": top,
        }

    def _completion_chunk(
        self, c: int, text: str, finish: str | None, logprobs: Any = None
    ) -> bytes:
        choice = {"index": c, "text": text, "finish_reason": finish, "logprobs": logprobs}
        return _data(self._completion_base() | {"choices": [choice]})

    def _completion_logprobs(self, c: int, start: int, end: int) -> dict[str, Any] | None:
        """Tokens ``start`` to ``end`` of choice ``c``'s logprobs; None when not asked."""
        if self.logprobs is None:
            return None
        tokens = [self._text(c, i) for i in range(start, end)]
        offset = sum(len(self._text(c, i)) for i in range(start))
        offsets = []
        for token in tokens:
            offsets.append(offset)
            offset += len(token)
        logprobs = [_logprob(c, i) for i in range(start, end)]
        top = [
            {t: lp} | {f"alt{k}": lp - k - 1 for k in range(self.logprobs)}
            for t, lp in zip(tokens, logprobs, strict=True)
        ]
        return {
            "tokens": tokens,
            "token_logprobs": logprobs,
            "top_logprobs": top,
            "text_offset": offsets,
        }


def _logprob(c: int, i: int) -> float:
    return -((i + c) % 8) / 8


def _piece(j: int, arguments: str) -> dict[str, Any]:
    """A tool call's delta after its first: more of its arguments."""
    return {"index": j, "function": {"arguments": arguments}}


_KINDS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completion",
    "/v1/messages": "messages",
}


def render_for(
    path: str, request: dict[str, Any], request_id: str, refuse: bool = False
) -> Render | None:
    """How to answer ``request`` at ``path`` (None: not an endpoint here). Odd
    values (a fuzzer's) fall back to the defaults; ``n`` and the logprobs are capped."""
    kind = _KINDS.get(path)
    if kind is None:
        return None
    options = request.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    n = request.get("n")
    return Render(
        kind=kind,
        model=str(request.get("model", MODELS[0])),
        request_id=request_id,
        include_usage=include_usage,
        choices=min(n, _MAX_CHOICES) if _count(n) and n else 1,
        logprobs=_logprobs_asked(kind, request),
        tools=_tools(request) if kind == "chat" else (),
        refuse=refuse and kind == "chat",
    )


_MAX_CHOICES, _MAX_TOP, _MAX_TOOLS = 16, 20, 4


def _count(value: object) -> TypeIs[int]:
    return type(value) is int and value >= 0


def _logprobs_asked(kind: str, request: dict[str, Any]) -> int | None:
    asked, top = request.get("logprobs"), request.get("top_logprobs")
    if kind == "chat" and asked is True:
        return min(top, _MAX_TOP) if _count(top) else 0
    if kind == "completion" and _count(asked):
        return min(asked, _MAX_TOP)
    return None


def _tools(request: dict[str, Any]) -> tuple[str, ...]:
    tools = request.get("tools")
    if not isinstance(tools, list) or request.get("tool_choice") == "none":
        return ()
    names = []
    for tool in tools[:_MAX_TOOLS]:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            names.append(name)
    return tuple(names)
