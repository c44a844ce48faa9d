"""The control sockets between workers survive any JSON, in a question or an answer.

Each case goes over a real Unix socket in a run directory, as between
workers: the exchange ends with one WARNING line and no traceback, and the
worker goes on answering.
"""

import json
import logging
import os
import pathlib

import pytest
import trio

from trioproxy.proxy.admin.cluster import Cluster, socket_path
from trioproxy.proxy.admin.inflight import Inflight

ODD = {
    "nested past the parser's depth": b"[" * 100_000,  # a RecursionError, were it parsed
    "nested within the length bound": b'{"op":' * 600 + b"1" + b"}" * 600,
    "not JSON": b"\xff\xfe{",
    "an array": b'["op", "list"]',
    "a number": b"7",
    "null": b"null",
    "no op": b"{}",
    "an op that is not a string": b'{"op": ["cancel"]}',
    "a cancel whose id is not a string": b'{"op": "cancel", "id": {"a": [1]}}',
    "too long": b'{"op": "list", "pad": "' + b"x" * 8192 + b'"}',
}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "trioproxy.cluster"]


async def _exchange(path: pathlib.Path, data: bytes) -> bytes:
    """The answer to ``data``; b"" when the other end hung up instead (closing with
    unread bytes, as it does on a question too long, is a reset)."""
    stream = await trio.open_unix_socket(str(path))
    answer = b""
    async with stream:
        try:
            await stream.send_all(data)
            await stream.send_eof()
            while chunk := await stream.receive_some():
                answer += chunk
        except trio.BrokenResourceError:
            return b""
    return answer


@pytest.mark.parametrize("question", ODD.values(), ids=ODD.keys())
async def test_an_odd_question_ends_only_its_exchange(
    nursery: trio.Nursery,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
    question: bytes,
) -> None:
    cluster = Cluster(Inflight(), str(tmp_path))
    await nursery.start(cluster.serve)
    path = socket_path(tmp_path, os.getpid())
    with trio.fail_after(10):
        assert await _exchange(path, question) == b""
        # The worker lives, and answers the next question as ever.
        answer = json.loads(await _exchange(path, b'{"op": "list"}'))
        cancel = json.loads(await _exchange(path, b'{"op": "cancel", "id": "1-1"}'))
    assert answer == {"requests": [], "recent": [], "unlisted": 0}
    assert cancel == {"cancelled": False}
    (warning,) = _warnings(caplog)
    assert warning.levelno == logging.WARNING and warning.exc_info is None
    assert len(warning.getMessage()) < 300


ODD_ANSWERS = {
    "nested past the parser's depth": b"[" * 100_000 + b"]" * 100_000,
    "not JSON": b"\xff",
    "an array": b"[]",
    "parts that are not lists": b'{"requests": "abc", "recent": []}',
    "a part missing": b'{"requests": []}',
    "rows that are not objects": b'{"requests": [1, 2], "recent": []}',
    "a count that is not one": b'{"requests": [], "recent": [], "unlisted": -1}',
    "a recent row with no end": b'{"requests": [], "recent": [{"id": "x"}]}',
    "an end that is not a number": b'{"requests": [], "recent": [{"ended_s_ago": "1"}]}',
}


@pytest.mark.parametrize("answer", ODD_ANSWERS.values(), ids=ODD_ANSWERS.keys())
async def test_a_worker_with_an_odd_answer_is_left_out_of_the_listing(
    nursery: trio.Nursery,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
    answer: bytes,
) -> None:
    async def odd_worker(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some():
                pass
            await stream.send_all(answer)

    peer = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await peer.bind(str(socket_path(tmp_path, 1)))
    peer.listen(4)
    nursery.start_soon(trio.serve_listeners, odd_worker, [trio.SocketListener(peer)])
    cluster = Cluster(Inflight(), str(tmp_path))
    with trio.fail_after(10):
        listing = await cluster.listing()
        cancelled = await cluster.cancel("1-7")  # worker 1 owns it, and answers oddly
    # The odd worker is named, never silently left out.
    assert listing == {"requests": [], "recent": [], "unlisted": 0, "unanswered": ["worker-1"]}
    assert cancelled is False
    warnings = _warnings(caplog)
    assert len(warnings) == 2, [w.getMessage() for w in warnings]  # the listing's, the cancel's
    assert all(w.levelno == logging.WARNING and w.exc_info is None for w in warnings)
