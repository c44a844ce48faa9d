"""What the simulated upstream says: OpenAI- and Anthropic-style payloads.

Pure functions of (endpoint, model, token count), so a test can compute the
exact bytes a stream must carry. Token ``i`` is the text ``"tok{i} "``;
nothing depends on the clock.
"""

import json
from dataclasses import dataclass
from typing import Any

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
    """One endpoint's framing. Streams are ``head + token(0..n-1) + tail(n)``."""

    kind: str  # "chat" | "completion" | "messages"
    model: str
    request_id: str
    include_usage: bool = False

    def head(self) -> bytes:
        if self.kind == "chat":
            return self._chat_chunk({"role": "assistant", "content": ""}, None)
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
        if self.kind == "chat":
            return self._chat_chunk({"content": token_text(i)}, None)
        if self.kind == "messages":
            return _event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": token_text(i)},
                },
            )
        return _data(
            {
                "id": self.request_id,
                "object": "text_completion",
                "created": CREATED,
                "model": self.model,
                "choices": [
                    {"index": 0, "text": token_text(i), "finish_reason": None, "logprobs": None}
                ],
            }
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
            tail = self._chat_chunk({}, "stop")
            if self.include_usage:
                tail += _data(self._chat_base() | {"choices": [], "usage": _usage(n)})
        else:
            tail = b""
        return tail + b"data: [DONE]\n\n"

    def whole(self, n: int) -> bytes:
        """The non-streaming answer."""
        text = "".join(token_text(i) for i in range(n))
        if self.kind == "chat":
            obj: dict[str, Any] = self._chat_base() | {
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": _usage(n),
            }
        elif self.kind == "messages":
            obj = {
                "id": self.request_id,
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "model": self.model,
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": _PROMPT_TOKENS, "output_tokens": n},
            }
        else:
            obj = {
                "id": self.request_id,
                "object": "text_completion",
                "created": CREATED,
                "model": self.model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
                "usage": _usage(n),
            }
        return json.dumps(obj, separators=(",", ":")).encode()

    def stream(self, n: int) -> bytes:
        """The whole event stream at once: what a test expects to receive."""
        return self.head() + b"".join(self.token(i) for i in range(n)) + self.tail(n)

    def _chat_base(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": None,
        }

    def _chat_chunk(self, delta: dict[str, Any], finish: str | None) -> bytes:
        return _data(
            self._chat_base()
            | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        )


_KINDS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completion",
    "/v1/messages": "messages",
}


def render_for(path: str, request: dict[str, Any], request_id: str) -> Render | None:
    kind = _KINDS.get(path)
    if kind is None:
        return None
    options = request.get("stream_options") or {}
    return Render(
        kind=kind,
        model=str(request.get("model", MODELS[0])),
        request_id=request_id,
        include_usage=bool(options.get("include_usage", False)),
    )
