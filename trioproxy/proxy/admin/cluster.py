"""The workers of one server seen as one, for the admin: listings and cancels.

With ``--workers N`` the parent makes a run directory and names it in
``TRIOPROXY_RUN_DIR``; each worker listens there on a Unix socket named by
its pid. An admin call lands in whichever worker the kernel gave the
connection to. That worker answers a listing from its own requests and from
each other worker's, asked over their sockets at the same time; a cancel goes
to the worker whose pid leads the request id (``<pid hex>-<n>``), which stops
the request exactly as if the call had come to it. A request's life stays
inside its worker: only listings and cancels cross.

The wire protocol is one JSON line each way per connection. A worker's
listing has a bound known in advance (``inflight.LISTING_MAX_BYTES``), which
is the bound on an answer, so a listing always crosses whole. A worker that
does not answer within :data:`ASK_TIMEOUT_S`, or whose answer is broken, is
named in the listing's ``unanswered`` (and a WARNING logged): it is never
silently left out. Its socket is removed by the parent when it exits.
Whatever arrives on a socket, a question or an answer (too long, not JSON,
nested past the parser's depth, not an object, fields of the wrong type),
ends that one exchange with one WARNING line; the worker goes on.
"""

import contextlib
import json
import logging
import os
import pathlib
from collections.abc import Callable
from typing import Any

import trio

from trioproxy.proxy.admin.inflight import LISTING_MAX_BYTES, Inflight

__all__ = ["ASK_TIMEOUT_S", "RUN_DIR", "Cluster"]

RUN_DIR = "TRIOPROXY_RUN_DIR"
ASK_TIMEOUT_S = 2.0
_MAX_ANSWER = LISTING_MAX_BYTES  # some 28 MB: entries are bounded, and so is their number
_MAX_QUESTION = 4096  # {"op": "cancel", "id": ...}
_PARTS = ("requests", "recent")

log = logging.getLogger("trioproxy.cluster")


def socket_path(run_dir: str | os.PathLike[str], pid: int) -> pathlib.Path:
    return pathlib.Path(run_dir) / f"worker-{pid}.sock"


class Cluster:
    """This worker's requests plus, when there are several workers, everyone's."""

    def __init__(self, inflight: Inflight, run_dir: str | None = None) -> None:
        self.inflight = inflight
        self._dir = pathlib.Path(run_dir) if run_dir else None
        self._own = socket_path(run_dir, os.getpid()) if run_dir else None

    @property
    def workers(self) -> int:
        return 1 + len(self._others())

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer the other workers' questions, until cancelled."""
        if self._own is None:
            task_status.started()
            return
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            self._own.unlink()  # a pid reused after a crash
        await sock.bind(str(self._own))
        sock.listen(64)
        try:
            task_status.started()
            await trio.serve_listeners(self._answer, [trio.SocketListener(sock)])
        finally:
            self._own.unlink(missing_ok=True)

    async def listing(self) -> dict[str, Any]:
        """Requests in flight and lately ended, in every worker.

        ``unlisted``: requests in flight past each worker's ``LISTED_MAX``;
        ``unanswered``: the workers (by socket name) whose listing is missing.
        """
        merged = self._own_listing()
        unanswered: list[str] = []
        for path, answer in await self._ask_all({"op": "list"}):
            if answer is None:
                unanswered.append(path.stem)
                continue
            merged["requests"] += answer["requests"]
            merged["recent"] += answer["recent"]
            merged["unlisted"] += answer["unlisted"]
        merged["recent"].sort(key=lambda r: r["ended_s_ago"])
        return merged | {"unanswered": sorted(unanswered)}

    async def cancel(self, request_id: str) -> bool:
        if self.inflight.cancel(request_id):
            return True
        owner = _owner(request_id)
        if self._dir is None or owner is None or owner == os.getpid():
            return False
        question = {"op": "cancel", "id": request_id}
        return await _ask(socket_path(self._dir, owner), question, _cancelled) is True

    def _own_listing(self) -> dict[str, Any]:
        return {
            "requests": self.inflight.listing(),
            "recent": self.inflight.recent(),
            "unlisted": self.inflight.unlisted,
        }

    def _others(self) -> list[pathlib.Path]:
        if self._dir is None:
            return []
        return [p for p in self._dir.glob("worker-*.sock") if p != self._own]

    async def _ask_all(
        self, question: dict[str, Any]
    ) -> list[tuple[pathlib.Path, dict[str, Any] | None]]:
        answers: list[tuple[pathlib.Path, dict[str, Any] | None]] = []

        async def ask(path: pathlib.Path) -> None:
            answers.append((path, await _ask(path, question, _listing)))

        async with trio.open_nursery() as nursery:
            for path in self._others():
                nursery.start_soon(ask, path)
        return answers

    async def _answer(self, stream: trio.SocketStream) -> None:
        # A fault here must end this one exchange, never the worker.
        async with stream:
            with trio.move_on_after(ASK_TIMEOUT_S):
                try:
                    question = _question(await _read_all(stream, _MAX_QUESTION))
                    answer: dict[str, Any]
                    if question["op"] == "cancel":
                        answer = {"cancelled": self.inflight.cancel(question["id"])}
                    else:
                        answer = self._own_listing()
                    await stream.send_all(json.dumps(answer).encode())
                except (OSError, trio.BrokenResourceError, ValueError, RecursionError) as exc:
                    log.warning("a control question went unanswered: %s", _brief(exc))


def _question(data: bytes) -> dict[str, str]:
    """``{"op": "list"}`` or ``{"op": "cancel", "id": "..."}``; ValueError for anything else."""
    question = json.loads(data)
    if not isinstance(question, dict) or question.get("op") not in ("list", "cancel"):
        raise ValueError("not a question: an object with op list or cancel")
    if question["op"] == "cancel" and not isinstance(question.get("id"), str):
        raise ValueError("a cancel without a string id")
    return question


def _listing(data: bytes) -> dict[str, Any]:
    """Another worker's answer to ``list``; ValueError unless it has the parts, as lists of
    objects, and every recent one says when it ended (the merged list is sorted by it)."""
    answer = json.loads(data)
    if not isinstance(answer, dict) or not all(
        isinstance(answer.get(part), list) and all(isinstance(r, dict) for r in answer[part])
        for part in _PARTS
    ):
        raise ValueError("not a listing")
    if not all(type(r.get("ended_s_ago")) in (int, float) for r in answer["recent"]):
        raise ValueError("a recent request without a number ended_s_ago")
    unlisted = answer.get("unlisted", 0)
    if type(unlisted) is not int or unlisted < 0:
        raise ValueError("unlisted is not a count")
    return {part: answer[part] for part in _PARTS} | {"unlisted": unlisted}


def _cancelled(data: bytes) -> bool:
    answer = json.loads(data)
    if not isinstance(answer, dict) or not isinstance(answer.get("cancelled"), bool):
        raise ValueError("not an answer to cancel")
    cancelled: bool = answer["cancelled"]
    return cancelled


def _brief(exc: BaseException) -> str:
    """One bounded line: the log names the fault, never echoes a peer's bytes at length."""
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _owner(request_id: str) -> int | None:
    head, _, _ = request_id.partition("-")
    try:
        return int(head, 16)
    except ValueError:
        return None


async def _ask[T](
    path: pathlib.Path, question: dict[str, Any], parse: Callable[[bytes], T]
) -> T | None:
    """One question to one worker, its answer read by ``parse``; None if it is gone, does
    not answer in time, or answers what ``parse`` refuses."""
    with trio.move_on_after(ASK_TIMEOUT_S):
        try:
            stream = await trio.open_unix_socket(str(path))
        except OSError:
            return None  # exited; the parent removes its socket
        async with stream:
            await stream.send_all(json.dumps(question).encode())
            await stream.send_eof()
            try:
                return parse(await _read_all(stream, _MAX_ANSWER))
            except (OSError, trio.BrokenResourceError, ValueError, RecursionError) as exc:
                log.warning("worker at %s gave no answer: %s", path.name, _brief(exc))
                return None
    log.warning("worker at %s did not answer within %g s", path.name, ASK_TIMEOUT_S)
    return None


async def _read_all(stream: trio.SocketStream, limit: int) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some():
        data += chunk
        if len(data) > limit:
            raise ValueError(f"longer than {limit} bytes")
    return bytes(data)
