"""OpenAI-style JSON error responses, sent over raw ASGI.

Clients built on the OpenAI SDKs parse ``{"error": {...}}`` bodies to show a
message; a proxy error that reaches them as plain text shows up as a crash.
"""

import json

from trioproxy.asgi import Send, send_json

__all__ = ["error_body", "send_json_error"]


def error_body(message: str, error_type: str, code: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    ).encode()


async def send_json_error(
    send: Send,
    status: int,
    message: str,
    error_type: str,
    code: str | None = None,
    *,
    close: bool = False,
    retry_after_s: float = 0,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    body = error_body(message, error_type, code)
    await send_json(send, status, body, close=close, retry_after_s=retry_after_s, headers=headers)
