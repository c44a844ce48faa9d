"""What a user of the command meets first: its version, its example settings
file, help text that reads as plain text, a LICENSE, and a README whose demo
table is the one the demo prints."""

import pathlib
import re
import subprocess
import sys
import tomllib

import pytest
import trio

import trioproxy
from trioproxy.proxy.gateway.settings import load

ROOT = pathlib.Path(__file__).parents[1]
CLI = [sys.executable, "-m", "trioproxy"]
COMMANDS = ["", "serve", "sim", "demo", "example-config", "conformance"]
PHASES = re.compile(r"^([a-z_]+) +(FIN|RST) +(closed|never opened|open) ", re.MULTILINE)


def _run(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_version_is_the_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _run("--version").strip() == f"trioproxy {trioproxy.__version__}"
    assert trioproxy.__version__ == project["version"]


def test_example_config_prints_the_packaged_file_which_the_docs_copy(
    tmp_path: pathlib.Path,
) -> None:
    printed = _run("example-config")
    packaged = ROOT / "trioproxy" / "proxy" / "gateway" / "example.toml"
    assert printed == packaged.read_text()
    assert printed == (ROOT / "docs" / "trioproxy.example.toml").read_text(), (
        "docs/trioproxy.example.toml is a copy: cp trioproxy/proxy/gateway/example.toml docs/"
    )
    (tmp_path / "t.toml").write_text(printed)
    env = {"TRIOPROXY_CLIENT_KEY": "c", "TRIOPROXY_ADMIN_KEY": "a", "OPENAI_API_KEY": "o"}
    assert load(str(tmp_path / "t.toml"), {}, env | {"ALICE_KEY": "k"}).proxy.upstreams


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_plain_text(command: str) -> None:
    text = _run(*([command] if command else []), "--help")
    assert "`" not in text and "](" not in text, text
    if command == "serve":
        assert "trioproxy example-config" in " ".join(text.split())


def test_the_license_is_mit_as_pyproject_says() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) the trioproxy authors" in text


async def test_the_readme_demo_table_has_the_demos_rows() -> None:
    with trio.fail_after(120):
        result = await trio.run_process([*CLI, "demo"], capture_stdout=True, capture_stderr=True)
    printed = PHASES.findall(result.stdout.decode())
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("```\nphase ") : readme.index("```\n\n## Running it")]
    shown = PHASES.findall(block)
    assert len(printed) >= 10 and sorted(shown) == sorted(printed), (shown, printed)
