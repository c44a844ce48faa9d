"""One JSON answer assembled from an OpenAI-style event stream (``stream_upstream``).

Pure: fed the bytes of a chat-completion or completion stream in any split,
:class:`Assembler` builds the answer the engine sends when asked without
``stream``: each choice by its index, the message's texts (``content``,
``refusal``, reasoning) and the completion's ``text`` concatenated,
``tool_calls`` put together from their deltas by index (ids and types as
first sent, names and arguments concatenated), ``logprobs`` lists
concatenated, the last ``finish_reason`` and ``usage``, and every other field
as last sent (``system_fingerprint``, ``stop_reason``, llama.cpp's
``timings``...). The I/O around it is :mod:`.streamed`'s.

What a stream may make it hold is bounded where it enters: the bytes fed
(``max_bytes``), the choices' and tool calls' indexes. A stream that passes
them, an event that is not a chunk, and an ``error`` event are an
:class:`AssemblyError`: the upstream's fault, answered 502 before any header.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from trioproxy.proxy.core.bounded import ERROR_MAX, kept
from trioproxy.proxy.relay.sse import events
from trioproxy.proxy.upstream.errors import UpstreamBroken

__all__ = [
    "MAX_BYTES",
    "MAX_CHOICES",
    "MAX_TOOL_CALLS",
    "Assembler",
    "AssemblyError",
    "Kind",
]

type Kind = Literal["chat", "completion"]

MAX_BYTES = 16 * 1024 * 1024
"""Event-stream bytes one answer is assembled from. What is held is what the
answer keeps: some 0.4 times the stream for text, 5.4 times for logprobs with
5 alternatives (83 MiB at the peak for 15 MiB, measured with tracemalloc)."""
MAX_CHOICES = 128
"""Choices of one answer (OpenAI's own cap on ``n``)."""
MAX_TOOL_CALLS = 128
"""Tool calls in one choice (OpenAI's own cap on ``tools``)."""

_OBJECT = {"chat": "chat.completion", "completion": "text_completion"}
_DONE = b"[DONE]"


class AssemblyError(UpstreamBroken):
    """The upstream's event stream cannot be assembled into an answer (a bad or
    oversized chunk, an ``error`` event, an end before the answer): its fault."""


@dataclass(slots=True)
class _Texts:
    """Fields whose string values are pieces to concatenate, others as last sent."""

    pieces: dict[str, list[str]] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)

    def feed(self, key: str, value: Any) -> None:
        if isinstance(value, str):
            self.pieces.setdefault(key, []).append(value)
            self.other.pop(key, None)
        elif key not in self.pieces and (value is not None or key not in self.other):
            self.other[key] = value

    def get(self, key: str) -> Any:
        return "".join(self.pieces[key]) if key in self.pieces else self.other.get(key)

    def names(self) -> list[str]:
        return [*self.pieces, *(k for k in self.other if k not in self.pieces)]


@dataclass(slots=True)
class _Call:
    id: str | None = None
    type: str | None = None
    function: _Texts = field(default_factory=_Texts)

    def feed(self, delta: dict[str, Any]) -> None:
        if self.id is None and isinstance(delta.get("id"), str) and delta["id"]:
            self.id = delta["id"]
        if self.type is None and isinstance(delta.get("type"), str) and delta["type"]:
            self.type = delta["type"]
        function = delta.get("function")
        if isinstance(function, dict):
            for key, value in function.items():
                self.function.feed(key, value)
        elif function is not None:
            raise AssemblyError("a tool call's function that is not an object")

    def whole(self) -> dict[str, Any]:
        function = {k: self.function.get(k) for k in ("name", "arguments")}
        function |= {k: self.function.get(k) for k in self.function.names() if k not in function}
        return {"id": self.id, "type": self.type or "function", "function": function}


@dataclass(slots=True)
class _Choice:
    index: int
    fields: _Texts = field(default_factory=_Texts)
    """The choice's own fields (a completion's ``text`` is a piece)."""
    message: _Texts = field(default_factory=_Texts)
    """A chat delta's fields."""
    calls: dict[int, _Call] = field(default_factory=dict)
    function_call: _Call | None = None
    logprobs: dict[str, Any] | None = None

    def feed(self, choice: dict[str, Any], kind: Kind) -> None:
        for key, value in choice.items():
            if key == "index":
                continue
            if key == "delta" and kind == "chat":
                self._delta(value)
            elif key == "logprobs":
                self._logprobs(value)
            elif key == "text" or not isinstance(value, str):
                self.fields.feed(key, value)
            else:  # finish_reason, stop_reason: as last sent
                self.fields.other[key] = value

    def _delta(self, delta: Any) -> None:
        if delta is None:
            return
        if not isinstance(delta, dict):
            raise AssemblyError("a delta that is not an object")
        for key, value in delta.items():
            if key == "role":
                if isinstance(value, str):
                    self.message.other[key] = value
            elif key == "tool_calls":
                self._tool_calls(value)
            elif key == "function_call" and value is not None:
                if not isinstance(value, dict):
                    raise AssemblyError("a function call that is not an object")
                self.function_call = self.function_call or _Call()
                for name, piece in value.items():
                    self.function_call.function.feed(name, piece)
            else:
                self.message.feed(key, value)

    def _tool_calls(self, calls: Any) -> None:
        if calls is None:
            return
        if not isinstance(calls, list):
            raise AssemblyError("tool_calls that are not a list")
        for position, call in enumerate(calls):
            if not isinstance(call, dict):
                raise AssemblyError("a tool call that is not an object")
            index = _index(call.get("index", position), MAX_TOOL_CALLS, "tool call")
            self.calls.setdefault(index, _Call()).feed(call)

    def _logprobs(self, logprobs: Any) -> None:
        if logprobs is None:
            return
        if not isinstance(logprobs, dict):
            raise AssemblyError("logprobs that are not an object")
        merged = self.logprobs if self.logprobs is not None else {}
        for key, value in logprobs.items():
            if isinstance(value, list):
                before = merged.get(key)
                merged[key] = [*before, *value] if isinstance(before, list) else list(value)
            elif value is not None or key not in merged:
                merged[key] = value
        self.logprobs = merged

    def whole(self, kind: Kind) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": self.index}
        if kind == "chat":
            choice["message"] = self._message()
        else:
            choice["text"] = self.fields.get("text") or ""
        choice["logprobs"] = self.logprobs
        choice["finish_reason"] = self.fields.get("finish_reason")
        for key in self.fields.names():
            if key not in choice:
                choice[key] = self.fields.get(key)
        return choice

    def _message(self) -> dict[str, Any]:
        texts = self.message
        message: dict[str, Any] = {"role": texts.get("role") or "assistant"}
        message["content"] = texts.get("content")
        for key in texts.names():
            if key not in message:
                message[key] = texts.get(key)
        if self.calls:
            message["tool_calls"] = [self.calls[i].whole() for i in sorted(self.calls)]
        if self.function_call is not None:
            message["function_call"] = self.function_call.whole()["function"]
        return message


class Assembler:
    """An event stream in, the one JSON answer out: :meth:`feed` the stream's bytes
    as they come, then :meth:`answer`. Raises :class:`AssemblyError`."""

    __slots__ = ("_choices", "_fed", "_kind", "_max_bytes", "_parts", "_top", "done", "usage")

    def __init__(self, kind: Kind, max_bytes: int = MAX_BYTES) -> None:
        self._kind: Kind = kind
        self._max_bytes = max_bytes
        self._fed = 0
        self._parts: list[bytes] = []
        """What came since the last line end: a long line is joined once, when it ends."""
        self._top: dict[str, Any] = {}
        self._choices: dict[int, _Choice] = {}
        self.usage: Any = None
        self.done = False
        """``data: [DONE]`` came: whatever follows is not read into the answer."""

    def feed(self, chunk: bytes) -> None:
        self._fed += len(chunk)
        if self._fed > self._max_bytes:
            raise AssemblyError(f"the answer's event stream passed {self._max_bytes} bytes")
        if self.done:
            return
        if b"\n" not in chunk and b"\r" not in chunk:
            self._parts.append(chunk)
            return
        found, rest = events(b"".join((*self._parts, chunk)))
        self._parts = [rest]
        for name, data in found:
            self._event(name, data)
            if self.done:
                return

    def answer(self) -> bytes:
        """The assembled answer, once the stream ended: ``[DONE]``, or every choice finished."""
        if not self.done:
            found, _ = events(b"".join((*self._parts, b"\n\n")))  # a last event with no blank line
            for name, data in found:
                self._event(name, data)
        finished = self._choices and all(
            c.fields.get("finish_reason") is not None for c in self._choices.values()
        )
        if not self.done and not finished:
            raise AssemblyError("the event stream ended before the answer was whole")
        answer: dict[str, Any] = {}
        for key in ("id", "object", "created", "model"):
            answer[key] = _OBJECT[self._kind] if key == "object" else self._top.get(key)
        answer["choices"] = [self._choices[i].whole(self._kind) for i in sorted(self._choices)]
        if self.usage is not None:
            answer["usage"] = self.usage
        answer |= {k: v for k, v in self._top.items() if k not in answer}
        return json.dumps(answer, separators=(",", ":")).encode()

    def _event(self, name: bytes, data: bytes) -> None:
        if data.strip() == _DONE:
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise AssemblyError("an event whose data is not JSON") from None
        if name == b"error" or (isinstance(chunk, dict) and "error" in chunk):
            raise AssemblyError(f"the upstream sent an error mid-answer: {_message(chunk)}")
        if not isinstance(chunk, dict):
            raise AssemblyError("an event that is not a JSON object")
        choices = chunk.get("choices")
        if not isinstance(choices, list | None):
            raise AssemblyError("choices that are not a list")
        for key, value in chunk.items():
            if key == "usage":
                self.usage = value if value is not None else self.usage
            elif key not in ("choices", "object") and (value is not None or key not in self._top):
                self._top[key] = value
        for choice in choices or ():
            if not isinstance(choice, dict):
                raise AssemblyError("a choice that is not an object")
            index = _index(choice.get("index", 0), MAX_CHOICES, "choice")
            self._choices.setdefault(index, _Choice(index)).feed(choice, self._kind)


def _index(value: Any, cap: int, what: str) -> int:
    if type(value) is not int or not 0 <= value < cap:
        raise AssemblyError(f"a {what} index that is not an integer from 0 to {cap - 1}")
    return value


def _message(chunk: Any) -> str:
    """The upstream's own words for its error, bounded."""
    error = chunk.get("error", chunk) if isinstance(chunk, dict) else chunk
    message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str):
        message = json.dumps(message)[: ERROR_MAX + 1]
    return kept(message, ERROR_MAX)
