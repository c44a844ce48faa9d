"""The Kubernetes manifest starts as it is: its container's arguments, its
variables and its settings file (from the ConfigMap), under a read-only root
with only the manifest's volumes writable, as the kubelet would run it.

No containers here: a private mount namespace (``unshare --mount``) whose
root is remounted read-only, with a tmpfs at each volume's mount path (the
ConfigMap's files written into it, then made read-only as ``readOnly: true``
says). The image's default command is run the same way as ``docker run`` would.
Two things differ from a pod, each said where it is done: the proxy listens on
127.0.0.1 and a free port (the file's 0.0.0.0:8000 is overridden by the
variables, which are stronger than the file), and it runs as root (this machine's
Python is under /root, which uid 10001 cannot read; a read-only mount binds
root too).
"""

import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import yaml  # type: ignore[import-untyped]

from tests.helpers import Running
from trioproxy.conformance import free_port

ROOT = pathlib.Path(__file__).parents[1]
MANIFEST = ROOT / "deploy" / "kubernetes" / "trioproxy.yaml"
DOCKERFILE = ROOT / "Dockerfile"

# The image has the package installed; here it is this checkout's (the cwd is /).
_BASE_ENV = {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"),
    reason="a private mount namespace needs root and util-linux's unshare",
)


def _documents() -> dict[str, dict[str, Any]]:
    with MANIFEST.open() as file:
        return {doc["kind"]: doc for doc in yaml.safe_load_all(file) if doc}


def _container() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    pod = _documents()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container, pod["volumes"]


_RUNTIME = sorted({str(ROOT), sys.prefix})
"""What the sandboxed command runs from: this checkout and the venv's Python."""
_HOLDER = "/mnt"
"""An empty directory of the root, where the hidden /tmp is held inside the namespace."""


def _bound_back(hidden: list[str]) -> list[str]:
    """Lines that bind each ``hidden`` path back from ``_HOLDER``, read-only."""
    lines = []
    for path in hidden:
        held = shlex.quote(_HOLDER + path.removeprefix("/tmp"))
        target = shlex.quote(path)
        lines += [
            f"mkdir -p {target}",
            f"mount --bind {held} {target}",
            f"mount -o remount,bind,ro {target}",
        ]
    return lines


def _sandbox(mounts: list[tuple[str, dict[str, str], bool]]) -> str:
    """A shell script: the root read-only, then a tmpfs at each ``(path, files,
    read_only)``; a path the root lacks is made in an overlay of its parent."""
    # This checkout and its venv may live under /tmp (a clean clone in CI), which
    # the tmpfs mounted there would hide: they are held at _HOLDER first, then
    # bound back, read-only, into each tmpfs mounted at /tmp.
    hidden = [p for p in _RUNTIME if p.startswith("/tmp/")]
    hidden = [p for p in hidden if not any(p.startswith(q + "/") for q in hidden)]
    lines = ["set -eu"]
    if hidden:
        lines.append(f"mount --bind /tmp {_HOLDER}")
    lines += [
        "mount -o remount,bind,ro /",
        # Scratch room for overlays, hidden later by the manifest's own /tmp if it has one.
        "mount -t tmpfs scratch /tmp",
        *_bound_back(hidden),
    ]
    for n, (path, _files, _read_only) in enumerate(mounts):
        if not os.path.exists(path):
            parent = shlex.quote(os.path.dirname(path))
            upper, work = f"/tmp/upper{n}", f"/tmp/work{n}"
            lines += [
                f"mkdir {upper} {work}",
                f"mount -t overlay overlay -o lowerdir={parent},upperdir={upper},workdir={work} "
                f"{parent}",
                f"mkdir {shlex.quote(path)}",
                f"mount -o remount,ro {parent}",
            ]
    if not any(path == "/tmp" for path, _, _ in mounts):
        lines.append("mount -o remount,ro /tmp")  # no /tmp volume: nothing writable there
    for path, files, read_only in mounts:
        lines.append(f"mount -t tmpfs volume {shlex.quote(path)}")
        if path == "/tmp":
            lines += _bound_back(hidden)
        for name, text in files.items():
            lines.append(f"printf %s {shlex.quote(text)} > {shlex.quote(path + '/' + name)}")
        if read_only:
            lines.append(f"mount -o remount,ro {shlex.quote(path)}")
    # The proof that the root is read-only: no writable temporary directory but the volumes.
    lines.append("for d in / /var/tmp /etc; do ! touch $d/.rw-check 2>/dev/null || exit 97; done")
    lines.append('exec "$@"')
    return "\n".join(lines)


def _mounts(container: dict[str, Any], volumes: list[dict[str, Any]]) -> list[Any]:
    by_name = {volume["name"]: volume for volume in volumes}
    config_maps = {
        doc["metadata"]["name"]: doc["data"]
        for doc in yaml.safe_load_all(MANIFEST.read_text())
        if doc and doc["kind"] == "ConfigMap"
    }
    mounts = []
    for mount in container.get("volumeMounts", []):
        volume = by_name[mount["name"]]
        files = config_maps[volume["configMap"]["name"]] if "configMap" in volume else {}
        mounts.append((mount["mountPath"], files, bool(mount.get("readOnly"))))
    return mounts


def _env(container: dict[str, Any], port: int) -> dict[str, str]:
    env = _BASE_ENV.copy()
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:  # a Secret's key: a value of the test's
            env[variable["name"]] = f"test-{variable['valueFrom']['secretKeyRef']['key']}"
    # The one change: loopback and a free port (a variable beats the file).
    return env | {"TRIOPROXY_HOST": "127.0.0.1", "TRIOPROXY_PORT": str(port)}


@asynccontextmanager
async def _run(
    script: str, args: list[str], env: dict[str, str], own_network: bool = False
) -> AsyncIterator[Running]:
    """``trioproxy ARGS`` in the sandbox; with ``own_network`` in a network namespace of
    its own too, where even 0.0.0.0 reaches no one outside."""
    argv = ["unshare", "--mount", "--propagation", "private", *(["--net"] if own_network else [])]
    argv += ["sh", "-c", script, "sandbox"]
    process = await trio.lowlevel.open_process(
        [*argv, sys.executable, "-m", "trioproxy", *args],
        stderr=subprocess.PIPE,
        env=env,
        cwd="/",  # the image's: a read-only directory too
        start_new_session=True,
    )
    try:
        yield Running(process)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await process.wait()


async def test_the_manifest_starts_under_a_read_only_root_and_serves() -> None:
    container, volumes = _container()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    port = free_port()
    env = _env(container, port)
    async with _run(_sandbox(_mounts(container, volumes)), container["args"], env) as proxy:
        with trio.fail_after(30):
            await proxy.wait_for(b"Running on", count=2)  # the file's two workers
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                health = await client.get("/health")
                # The admin's listing crosses to the other worker through the run directory.
                admin = await client.get(
                    "/admin/requests", headers={"authorization": "Bearer test-admin-key"}
                )
                refused = await client.post("/v1/chat/completions", json={"model": "m"})
        proxy.process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            log = await proxy.drain()
            assert await proxy.process.wait() == 0, log.decode()
    assert health.status_code == 200 and admin.status_code == 200, log.decode()
    assert refused.status_code == 401  # the Secret's client key is required
    assert b"Traceback" not in log and b"ERROR" not in log


async def test_without_a_writable_tmp_workers_fail_in_one_line() -> None:
    container, volumes = _container()
    mounts = [m for m in _mounts(container, volumes) if m[0] != "/tmp"]
    env = _env(container, free_port())
    async with _run(_sandbox(mounts), container["args"], env) as proxy:
        with trio.fail_after(30):
            log = (await proxy.drain()).decode()
            assert await proxy.process.wait() == 1, log
    (line,) = log.splitlines()
    assert line.startswith("trioproxy: --workers 2 needs a writable directory"), line
    assert "mount one at /tmp" in line


def _dockerfile_command() -> list[str]:
    words = {}
    for line in DOCKERFILE.read_text().splitlines():
        keyword, _, rest = line.partition(" ")
        if keyword in ("ENTRYPOINT", "CMD"):
            words[keyword] = yaml.safe_load(rest)  # the JSON form
    assert words["ENTRYPOINT"] == ["trioproxy"]
    return list(words["CMD"])


async def test_the_images_default_command_warns_that_it_relays_to_the_simulator() -> None:
    command = _dockerfile_command()
    assert "--upstream" not in command and "0.0.0.0" in command
    env = _BASE_ENV.copy()
    # Exactly the image's command, on 0.0.0.0:8000 of a network namespace of its own.
    async with _run(_sandbox([]), command, env, own_network=True) as proxy:
        with trio.fail_after(30):
            line = (await proxy.wait_for(b"simulated upstream")).decode()
            await proxy.wait_for(b"Running on")
    assert " WARNING " in line, line
    assert "MADE UP" in line and "any client that reaches 0.0.0.0:8000" in line, line
