"""What ships: the wheel and sdist build, the wheel installs into a fresh
venv where ``trioproxy demo`` runs, and the image and Kubernetes files lint."""

import pathlib
import sys
import venv
import zipfile

import trio

ROOT = pathlib.Path(__file__).parents[1]
BIN = pathlib.Path(sys.executable).parent


async def run(*argv: str | pathlib.Path) -> str:
    done = await trio.run_process([str(a) for a in argv], capture_stdout=True, capture_stderr=True)
    return bytes(done.stdout + done.stderr).decode()


async def test_wheel_and_sdist_build_and_the_wheel_runs_the_demo(tmp_path: pathlib.Path) -> None:
    dist = tmp_path / "dist"
    with trio.fail_after(600):
        await run(sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", dist, ROOT)
        (wheel,) = dist.glob("trioproxy-*.whl")
        (sdist,) = dist.glob("trioproxy-*.tar.gz")
        fresh = tmp_path / "venv"
        await trio.to_thread.run_sync(lambda: venv.create(fresh, with_pip=True))
        await run(fresh / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
        demo = await run(fresh / "bin" / "trioproxy", "demo")
        example = await run(fresh / "bin" / "trioproxy", "example-config")
        page = await run(
            fresh / "bin" / "python",
            "-c",
            "from trioproxy.proxy.admin.control import ASSETS, Admin; "
            "print(min(len(Admin.page()), *(len(Admin.asset(name)) for name in ASSETS)))",
        )
    assert sdist.stat().st_size > 10_000
    assert int(page) > 1000, page  # the admin page, its script and styles ship in the wheel
    assert "streaming            RST   closed" in demo, demo
    assert example == (ROOT / "docs" / "trioproxy.example.toml").read_text()  # in the wheel
    with zipfile.ZipFile(wheel) as files:
        assert any(name.endswith("/LICENSE") for name in files.namelist())


async def test_dockerfile_and_kubernetes_manifests_lint() -> None:
    with trio.fail_after(120):
        hadolint = await trio.run_process(
            [BIN / "hadolint", ROOT / "Dockerfile"], capture_stdout=True, check=False
        )
        manifests = await trio.run_process(
            [BIN / "kubernetes-validate", ROOT / "deploy" / "kubernetes" / "trioproxy.yaml"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert hadolint.returncode == 0, hadolint.stdout.decode()
    assert manifests.returncode == 0, (manifests.stdout + manifests.stderr).decode()
    said = (manifests.stdout + manifests.stderr).decode()
    assert said.count(" passed for resource ") == 4, said


def test_the_image_runs_as_a_user_and_checks_its_health() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.13-slim" in dockerfile
    assert "\nUSER 10001" in dockerfile and "HEALTHCHECK" in dockerfile and "/health" in dockerfile
