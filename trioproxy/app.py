"""The ASGI application: the raw relay for ``/v1/``, Quart for everything else.

The relay is a raw ASGI handler in front of Quart on purpose: a Quart view
never sees ``http.disconnect``, Quart's ``RESPONSE_TIMEOUT`` (60 s by default)
silently cuts long streams, and a generator body that holds an upstream
response is cleaned up by the garbage collector if Quart is cancelled before
it enters it. Quart keeps the routes where none of that matters.
"""

from typing import Any

from quart import jsonify
from quart_trio import QuartTrio

from trioproxy import __version__
from trioproxy.asgi import ASGIApp, Receive, Scope, Send

__all__ = ["build_app"]


def _control_app() -> QuartTrio:
    app = QuartTrio("trioproxy")
    # Never let Quart cut a response on a clock; streams end when they end.
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = None

    @app.get("/health")
    async def health() -> Any:
        return jsonify({"status": "ok", "version": __version__})

    @app.errorhandler(404)
    async def not_found(error: Any) -> Any:
        return jsonify(
            {
                "error": {
                    "message": "not found: the OpenAI API is served under /v1/",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "not_found",
                }
            }
        ), 404

    @app.errorhandler(405)
    async def not_allowed(error: Any) -> Any:
        return jsonify(
            {
                "error": {
                    "message": "method not allowed",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "method_not_allowed",
                }
            }
        ), 405

    return app


def build_app(relay: ASGIApp) -> ASGIApp:
    control = _control_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await relay(scope, receive, send)
        else:
            await control(scope, receive, send)  # type: ignore[arg-type]

    return app
