"""OpenAI-style JSON error responses, sent over raw ASGI.

Clients built on the OpenAI SDKs parse ``{"error": {...}}`` bodies to show a
message; a proxy error that reaches them as plain text shows up as a crash.
"""

import json
import math

from trioproxy.asgi import Send

__all__ = ["error_body", "send_json", "send_json_error"]


def error_body(message: str, error_type: str, code: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    ).encode()


async def send_json(
    send: Send, status: int, body: bytes, *, close: bool = False, retry_after_s: float = 0
) -> None:
    """A whole JSON answer in two ASGI messages; ``close`` ends the connection after it."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if close:
        headers.append((b"connection", b"close"))
    if retry_after_s:
        headers.append((b"retry-after", b"%d" % math.ceil(retry_after_s)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_json_error(
    send: Send,
    status: int,
    message: str,
    error_type: str,
    code: str | None = None,
    *,
    close: bool = False,
    retry_after_s: float = 0,
) -> None:
    body = error_body(message, error_type, code)
    await send_json(send, status, body, close=close, retry_after_s=retry_after_s)
