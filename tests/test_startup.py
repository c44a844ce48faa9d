"""Start-up refuses a wrong setting in one line: the setting, the bad value, exit 1.

Each case runs ``trioproxy serve`` as an operator would, with the mistake in
an option, a variable or the settings file, and reads its stderr: one line,
no traceback, naming what to fix.
"""

import logging
import os
import pathlib
import socket
import sys

import pytest
import trio

from trioproxy.proxy.gateway.settings import load
from trioproxy.proxy.gateway.startup import warn_of_open_relay

CLI = [sys.executable, "-m", "trioproxy"]

_UPSTREAM = '[[upstream]]\nname = "a"\nurl = "http://127.0.0.1:1/v1"\n'

# (id, arguments before "serve", after it, variables, settings file, what the line names)
CASES: list[tuple[str, list[str], list[str], dict[str, str], str | None, list[str]]] = [
    ("port-a-word", [], [], {}, '[server]\nport = "eighty"\n', ['server.port = "eighty"']),
    ("timeout-a-word", [], [], {}, '[timeouts]\nconnect_s = "ten"\n',
     ['timeouts.connect_s = "ten"']),
    ("log-level", ["--log-level", "verbose"], [], {}, None, ["--log-level", "'verbose'"]),
    ("log-level-after-serve", [], ["--log-level", "loud"], {}, None, ["--log-level = 'loud'"]),
    ("log-level-variable", [], [], {"TRIOPROXY_LOG_LEVEL": "loud"}, None,
     ["TRIOPROXY_LOG_LEVEL = 'loud'"]),
    ("models-a-string", [], [], {}, _UPSTREAM + 'models = "gpt-4o"\n',
     ['models = "gpt-4o"', "list"]),
    ("workers-0", [], [], {}, "[server]\nworkers = 0\n", ["server.workers = 0", "at least 1"]),
    ("heartbeat-negative", [], ["--heartbeat", "-1"], {}, None, ["--heartbeat = '-1'"]),
    ("headers-timeout-0", [], [], {"TRIOPROXY_HEADERS_TIMEOUT": "0"}, None,
     ["TRIOPROXY_HEADERS_TIMEOUT = '0'", "more than 0"]),
    ("h2-budget-0", [], [], {}, "[limits]\nh2_max_resets_per_s = 0\n",
     ["limits.h2_max_resets_per_s = 0", "at least 1"]),
    ("port-too-high", [], ["--port", "70000"], {}, None, ["--port = '70000'", "65535"]),
    ("body-negative", [], [], {}, "[limits]\nmax_body_mib = -5\n", ["limits.max_body_mib = -5"]),
    ("flag-not-boolean", [], [], {"TRIOPROXY_EARLY_HEADERS": "maybe"}, None,
     ["TRIOPROXY_EARLY_HEADERS = 'maybe'"]),
    ("origins-a-string", [], [], {}, '[cors]\norigins = "https://a.example"\n',
     ['cors.origins = "https://a.example"', "list"]),
    ("key-limit-0", [], [], {"K": "sk-k"},
     '[[key]]\nname = "k"\nkey_env = "K"\nmax_concurrent = 0\n', ["max_concurrent = 0"]),
    ("host-a-number", [], [], {}, "[server]\nhost = 5\n", ["server.host = 5", "string"]),
    ("stall-nan", [], ["--send-stall", "nan"], {}, None, ["--send-stall = 'nan'", "finite"]),
    ("grace-a-word", [], [], {"TRIOPROXY_GRACE_PERIOD": "soon"}, None,
     ["TRIOPROXY_GRACE_PERIOD = 'soon'"]),
    ("certfile-missing", [], ["--certfile", "/nonexistent.pem"], {}, None,
     ["--certfile /nonexistent.pem", "cannot read"]),
    ("upstream-one-table", [], [], {}, _UPSTREAM.replace("[[upstream]]", "[upstream]"),
     ["[[upstream]]"]),
    ("log-format", [], ["--log-format", "xml"], {}, None,
     ['--log-format = "xml"', "not one of text, json"]),
    ("log-format-file", [], [], {}, '[server]\nlog_format = "yaml"\n',
     ['server.log_format = "yaml"', "text, json"]),
]  # fmt: skip


async def _fails(args: list[str], env: dict[str, str]) -> str:
    """``trioproxy ARGS``'s stderr, once it exited 1; fails if it ever started serving."""
    with trio.fail_after(30):
        result = await trio.run_process(
            [*CLI, *args],
            env=os.environ | {"PYTHONUNBUFFERED": "1"} | env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    return stderr


@pytest.mark.parametrize(("before", "after", "env", "text", "named"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
async def test_a_wrong_setting_is_one_line_naming_it_and_its_value(
    tmp_path: pathlib.Path,
    before: list[str],
    after: list[str],
    env: dict[str, str],
    text: str | None,
    named: list[str],
) -> None:
    config = []
    if text is not None:
        (tmp_path / "trioproxy.toml").write_text(text)
        config = ["--config", str(tmp_path / "trioproxy.toml")]
    stderr = await _fails([*before, "serve", "--port", "0", *config, *after], env)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("trioproxy: ") and "Traceback" not in stderr
    for words in named:
        assert words in lines[0], lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_port_in_use_is_one_line(workers: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        stderr = await _fails(
            [
                "serve",
                "--port",
                str(port),
                "--workers",
                workers,
                "--upstream",
                "http://127.0.0.1:1/v1",
            ],
            {},
        )
    assert stderr.splitlines() == [
        f"trioproxy: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


@pytest.mark.parametrize(
    ("given", "warned"),
    [
        ({"host": "0.0.0.0", "upstream_key": "sk-up"}, True),
        ({"host": "192.0.2.7", "upstream_key": "sk-up"}, True),
        ({"host": "0.0.0.0", "upstream_key": "sk-up", "api_key": ["sk-client"]}, False),
        ({"host": "127.0.0.1", "upstream_key": "sk-up"}, False),
        ({"host": "::1", "upstream_key": "sk-up"}, False),
        ({"host": "0.0.0.0"}, False),  # no key held: nothing to spend
    ],
)
def test_an_open_relay_beyond_loopback_is_a_warning(
    caplog: pytest.LogCaptureFixture, given: dict[str, object], warned: bool
) -> None:
    settings = load(None, {"upstream": "http://127.0.0.1:1/v1", **given}, {})
    with caplog.at_level(logging.WARNING, "trioproxy"):
        warn_of_open_relay(settings)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(lines) == warned, lines
    if warned:
        assert 'open relay: the key of upstream "default"' in lines[0]
        assert f"{given['host']}:8000" in lines[0] and "sk-up" not in lines[0]


def test_the_log_level_is_taken_after_the_command_before_it_and_from_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trioproxy.cli import _parser

    assert _parser().parse_args(["serve", "--log-level", "DEBUG"]).log_level == "DEBUG"
    assert _parser().parse_args(["--log-level", "ERROR", "serve"]).log_level == "ERROR"
    monkeypatch.setenv("TRIOPROXY_LOG_LEVEL", "warning")
    assert _parser().parse_args(["serve"]).log_level == "warning"
    assert _parser().parse_args(["serve", "--log-level", "info"]).log_level == "info"
