"""Whether the proxy traces its requests, decided by OpenTelemetry's own variables.

Tracing is on when the ``otel`` extra is installed (``pip install
trioproxy[otel]``) and the environment asks for traces the standard way:
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set,
or ``OTEL_TRACES_EXPORTER`` set to anything but ``none``; never with
``OTEL_SDK_DISABLED=true``. Asked for without the extra, start-up says so in
one WARNING and serves untraced. The OpenTelemetry modules are imported only
then (:mod:`.otel`): the proxy runs without them.
"""

import logging
import os
from collections.abc import Mapping
from typing import Protocol

from trioproxy.proxy.core.record import RequestRecord

__all__ = ["Tracing", "open_tracing", "wanted"]

log = logging.getLogger("trioproxy")


class Tracing(Protocol):
    """An observer of each API request's end (``Requests.subscribe(ended=...)``)."""

    def ended(self, rec: RequestRecord) -> None: ...

    async def aclose(self) -> None:
        """Export what is left, within a bound."""


def wanted(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return any(env.get(name) for name in endpoints) or exporter not in ("", "none")


def open_tracing(env: Mapping[str, str] | None = None) -> Tracing | None:
    """The tracing the environment asks for, or None."""
    env = os.environ if env is None else env
    if not wanted(env):
        return None
    try:
        from trioproxy.proxy.admin.otel import OtelTracing, provider_from_environment
    except ImportError as exc:
        log.warning(
            "OTEL_* variables ask for traces, but %s is not installed: no traces "
            "(pip install 'trioproxy[otel]')",
            exc.name or "opentelemetry",
        )
        return None
    return OtelTracing(provider_from_environment(), owned=True)
