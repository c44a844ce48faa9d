"""The protocol of one connection: HTTP/1.1 until the client asks for HTTP/2.

hypercorn's ``ProtocolWrapper`` names its own protocol classes, so this is
its logic with the guarded ones (:mod:`.guards.http1`, :mod:`.guards.http2`).
An ``Upgrade: h2c`` never switches here (the HTTP/1.1 guard ignores it); a
client that opens with the HTTP/2 preface (prior knowledge) is switched.
"""

from collections.abc import Awaitable, Callable

from hypercorn.config import Config
from hypercorn.events import Event, RawData
from hypercorn.protocol.h11 import H2ProtocolAssumedError
from hypercorn.trio.task_group import TaskGroup
from hypercorn.typing import AppWrapper, ConnectionState, WorkerContext

from trioproxy.server.guards.hangup import Hangup
from trioproxy.server.guards.http1 import GuardedH11Protocol
from trioproxy.server.guards.http2 import GuardedH2Protocol

__all__ = ["Protocols"]


class Protocols:
    """What hypercorn's ``ProtocolWrapper`` is, with the guarded protocols."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        task_group: TaskGroup,
        state: ConnectionState,
        ssl: bool,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        send: Callable[[Event], Awaitable[None]],
        alpn_protocol: str | None,
        hangup: Hangup | None,
        send_bytes: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self._args = (app, config, context, task_group, state, ssl, client, server, send)
        self.protocol: GuardedH11Protocol | GuardedH2Protocol
        if alpn_protocol == "h2":
            self.protocol = GuardedH2Protocol(*self._args)
        else:
            self.protocol = GuardedH11Protocol(*self._args, hangup=hangup, send_bytes=send_bytes)

    async def initiate(self) -> None:
        await self.protocol.initiate()

    async def handle(self, event: Event) -> None:
        try:
            await self.protocol.handle(event)
        except H2ProtocolAssumedError as error:  # the HTTP/2 preface
            self.protocol = GuardedH2Protocol(*self._args)
            await self.protocol.initiate()
            if error.data != b"":
                await self.protocol.handle(RawData(data=error.data))
