"""The workers of one server seen as one, for the admin: listings and cancels.

With ``--workers N`` the parent makes a run directory and names it in
``TRIOPROXY_RUN_DIR``; each worker listens there on a Unix socket named by
its pid. An admin call lands in whichever worker the kernel gave the
connection to. That worker answers a listing from its own requests and from
each other worker's, asked over their sockets at the same time; a cancel goes
to the worker whose pid leads the request id (``<pid hex>-<n>``), which stops
the request exactly as if the call had come to it. A request's life stays
inside its worker: only listings, cancels and reloads cross. A reload asked
of one worker (``POST /admin/reload``) is asked of every other, and the
parent asks each worker the same when it gets SIGHUP
(:func:`ask_to_reload`): each reads the settings file itself and answers
whether it could.

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
import socket
from collections.abc import Callable
from typing import Any

import trio

from trioproxy.proxy.admin.inflight import LISTING_MAX_BYTES, Inflight

__all__ = ["ASK_TIMEOUT_S", "RUN_DIR", "Cluster", "ask_to_reload", "socket_path"]

RUN_DIR = "TRIOPROXY_RUN_DIR"
ASK_TIMEOUT_S = 2.0
_MAX_ANSWER = LISTING_MAX_BYTES  # some 28 MB: entries are bounded, and so is their number
_MAX_QUESTION = 4096  # {"op": "cancel", "id": ...}
_PARTS = ("requests", "recent")
_BY_MAX = 64  # why a reload is asked: "SIGHUP", "POST /admin/reload"
_MESSAGE_MAX = 2000  # a reload's answer: what changed, or why not
_OPS = ("list", "cancel", "reload")

type Reload = Callable[[str], dict[str, Any]]
"""Reload this worker's settings (the argument says why); its answer as JSON."""

log = logging.getLogger("trioproxy.cluster")


def socket_path(run_dir: str | os.PathLike[str], pid: int) -> pathlib.Path:
    return pathlib.Path(run_dir) / f"worker-{pid}.sock"


class Cluster:
    """This worker's requests plus, when there are several workers, everyone's."""

    def __init__(
        self, inflight: Inflight, run_dir: str | None = None, reload: Reload | None = None
    ) -> None:
        self.inflight = inflight
        self._reload = reload
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
        for path, answer in await self._ask_all({"op": "list"}, _listing):
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

    async def reload(self, by: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Reload here and in every other worker: each one's answer (this one's first),
        and the workers (by socket name) that gave none."""
        own = self._reloaded_here(by)
        answers, unanswered = [own], []
        for path, answer in await self._ask_all({"op": "reload", "by": by}, _reloaded):
            if answer is None:
                unanswered.append(path.stem)
            else:
                answers.append(answer)
        return answers, sorted(unanswered)

    def _reloaded_here(self, by: str) -> dict[str, Any]:
        if self._reload is None:
            return {"pid": os.getpid(), "reloaded": False, "message": "cannot reload"}
        answer = self._reload(by)
        return answer | {"message": answer["message"][:_MESSAGE_MAX]}

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
        self, question: dict[str, Any], parse: Callable[[bytes], dict[str, Any]]
    ) -> list[tuple[pathlib.Path, dict[str, Any] | None]]:
        answers: list[tuple[pathlib.Path, dict[str, Any] | None]] = []

        async def ask(path: pathlib.Path) -> None:
            answers.append((path, await _ask(path, question, parse)))

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
                    elif question["op"] == "reload":
                        answer = self._reloaded_here(question["by"])
                    else:
                        answer = self._own_listing()
                    await stream.send_all(json.dumps(answer).encode())
                except (OSError, trio.BrokenResourceError, ValueError, RecursionError) as exc:
                    log.warning("a control question went unanswered: %s", _brief(exc))


def _question(data: bytes) -> dict[str, str]:
    """``{"op": "list"}``, ``{"op": "cancel", "id": "..."}`` or ``{"op": "reload",
    "by": "..."}``; ValueError for anything else."""
    question = json.loads(data)
    if not isinstance(question, dict) or question.get("op") not in _OPS:
        raise ValueError("not a question: an object with op list, cancel or reload")
    if question["op"] == "cancel" and not isinstance(question.get("id"), str):
        raise ValueError("a cancel without a string id")
    by = question.get("by")
    if question["op"] == "reload" and not (isinstance(by, str) and 0 < len(by) <= _BY_MAX):
        raise ValueError(f"a reload without a string by of at most {_BY_MAX} characters")
    return question


def _reloaded(data: bytes) -> dict[str, Any]:
    """A worker's answer to ``reload``; ValueError unless it says which worker, whether
    it reloaded, and what (its message cut to a bound: it goes into a log line)."""
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise ValueError("not an answer to reload")
    pid, ok, message = answer.get("pid"), answer.get("reloaded"), answer.get("message")
    restart = answer.get("needs_restart", [])
    if type(pid) is not int or type(ok) is not bool or not isinstance(message, str):
        raise ValueError("an answer to reload without its pid, reloaded or message")
    if not isinstance(restart, list) or not all(isinstance(k, str) for k in restart):
        raise ValueError("needs_restart is not a list of strings")
    cut = message[:_MESSAGE_MAX]
    return {"pid": pid, "reloaded": ok, "message": cut, "needs_restart": restart[:64]}


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


def ask_to_reload(run_dir: str, pid: int, by: str, timeout_s: float) -> dict[str, Any] | str:
    """The worker ``pid``'s answer to a reload, asked from a process with no trio
    loop (the parent, on SIGHUP); or why there is none, in a few words."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(socket_path(run_dir, pid)))
            sock.sendall(json.dumps({"op": "reload", "by": by}).encode())
            sock.shutdown(socket.SHUT_WR)
            data = bytearray()
            while chunk := sock.recv(65536):
                data += chunk
                if len(data) > _MAX_QUESTION + _MESSAGE_MAX:
                    return "its answer is too long"
        return _reloaded(bytes(data))
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return f"not reachable ({exc.strerror or exc}): a worker starting reads the file anew"
    except (ValueError, RecursionError) as exc:
        return _brief(exc)


async def _read_all(stream: trio.SocketStream, limit: int) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some():
        data += chunk
        if len(data) > limit:
            raise ValueError(f"longer than {limit} bytes")
    return bytes(data)
