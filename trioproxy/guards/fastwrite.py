"""hypercorn's writes to a plain TCP client, without a lock and a cancel scope each.

Every byte hypercorn sends goes through ``TCPServer.protocol_send``: take
the connection's send lock, open a shielded cancel scope, ``send_all``.
Under wrk with a thousand paced streams that was 43% of the proxy's CPU, one
relayed event at a time. When no other write is under way (the lock is
free), the bytes go straight to the non-blocking socket with one ``send``;
only what the kernel did not take (a client that reads slowly) goes the
long way, in order, since nothing else runs in between. TLS connections
always take the long way: their bytes must be encrypted first.

Errors are left to the long way too: it turns a broken connection into
hypercorn's ``Closed`` handling, exactly as before.
"""

import os
from typing import Any

import trio
from hypercorn.events import RawData
from hypercorn.trio.tcp_server import TCPServer

__all__ = ["install"]


def install() -> None:
    protocol_send = TCPServer.protocol_send

    async def fast_protocol_send(self: Any, event: Any) -> None:
        if type(event) is RawData and not self.send_lock.locked():
            stream = self.stream
            if type(stream) is trio.SocketStream:
                data = event.data
                try:
                    sent = os.write(stream.socket.fileno(), data)
                except OSError:  # would block, or broken: the long way says which
                    sent = 0
                if sent == len(data):
                    return
                event = RawData(data=data[sent:])
        await protocol_send(self, event)

    setattr(TCPServer, "protocol_send", fast_protocol_send)  # noqa: B010 (mypy: method-assign)
