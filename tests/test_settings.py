"""Settings from TOML, environment and command line; wrong ones stop start-up clearly."""

import pathlib

import pytest

from trioproxy.cli import _parser
from trioproxy.proxy.gateway import options
from trioproxy.proxy.gateway.settings import SettingsError, load

GOOD = """
[server]
port = 9000

[timeouts]
headers_s = 120

[auth]
api_keys_env = ["CLIENT_KEY"]

[[upstream]]
name = "a"
url = "http://127.0.0.1:1/v1"
api_key_env = "A_KEY"
models = ["alpha", "a-*"]
fallback = ["b"]

[[upstream]]
name = "b"
url = "http://127.0.0.1:2/v1"
models = ["beta"]
"""
ENV = {"A_KEY": "sk-a", "CLIENT_KEY": "ck"}


def write(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "trioproxy.toml"
    path.write_text(text)
    return str(path)


def test_file_environment_and_cli_merge(tmp_path: pathlib.Path) -> None:
    settings = load(
        write(tmp_path, GOOD),
        {"port": 9100, "api_key": ["cli-key"]},
        ENV | {"TRIOPROXY_HOST": "0.0.0.0"},
    )
    assert (settings.host, settings.port) == ("0.0.0.0", 9100)  # env, then CLI, over the file
    proxy = settings.proxy
    assert proxy.headers_timeout_s == 120
    assert proxy.api_keys == {"ck", "cli-key"}
    router = proxy.router()
    assert router.route("alpha") is router.route("a-mini") is router.by_name["a"]
    assert router.route("beta") is router.by_name["b"]
    assert router.route("gamma") is None
    assert router.by_name["a"].key == "sk-a"
    assert [u.name for u in router.chain(router.by_name["a"])] == ["a", "b"]
    assert "sk-a" not in repr(proxy)


def test_single_upstream_flag_replaces_the_file_upstreams(tmp_path: pathlib.Path) -> None:
    settings = load(write(tmp_path, GOOD), {"upstream": "http://x/v1"}, ENV)
    assert [u.url for u in settings.proxy.router().upstreams] == ["http://x/v1"]
    assert not settings.proxy.router().needs_model


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[server]\nport = \n", {}, "line 2"),
        ("[server]\nprot = 1\n", {}, "unknown key server.prot"),
        ("[serve]\nport = 1\n", {}, "unknown section [serve]"),
        (GOOD, {"CLIENT_KEY": "ck"}, "A_KEY is not set"),
        (
            GOOD.replace('models = ["beta"]', 'models = ["alpha"]'),
            ENV,
            "model 'alpha' is claimed by upstreams 'a' and 'b'",
        ),
        (GOOD.replace('fallback = ["b"]', 'fallback = ["c"]'), ENV, "fallback 'c'"),
    ],
    ids=[
        "invalid-toml",
        "unknown-key",
        "unknown-section",
        "unset-env",
        "duplicate-model",
        "unknown-fallback",
    ],
)
def test_wrong_settings_name_the_problem(
    tmp_path: pathlib.Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(write(tmp_path, text), {}, env)


def test_the_example_file_is_valid() -> None:
    example = pathlib.Path(__file__).parents[1] / "docs" / "trioproxy.example.toml"
    env = {"TRIOPROXY_CLIENT_KEY": "c", "TRIOPROXY_ADMIN_KEY": "a", "OPENAI_API_KEY": "o"}
    settings = load(str(example), {}, env | {"ALICE_KEY": "sk-secret-9"})
    assert [u.name for u in settings.proxy.router().upstreams] == ["openai", "local"]
    assert settings.proxy.admin_key == "a" and settings.proxy.api_keys == {"c"}
    (alice,) = settings.proxy.client_keys
    assert (alice.name, alice.max_concurrent, alice.per_minute) == ("alice", 4, 60)
    assert alice.key == "sk-secret-9" and "sk-secret" not in repr(alice)  # never logged


def test_the_readme_option_table_is_the_settings_table() -> None:
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    assert options.rewrite(readme) == readme, (
        "run: python -m trioproxy.proxy.gateway.options README.md"
    )


_SAMPLES: dict[object, object] = {str: "x.example", int: 7, float: 2.5}


@pytest.mark.parametrize("opt", [o for o in options.OPTIONS if o.name != "config"], ids=str)
def test_every_option_comes_from_the_command_line_a_variable_or_the_file(
    opt: options.Option,
) -> None:
    value: object = True if opt.flag else (opt.choices or [_SAMPLES[opt.kind]])[-1]
    wanted = [value] if opt.repeat else value
    text = "true" if opt.flag else str(value)
    assert options.resolve({}, {}, {opt.name: wanted})[opt.name] == wanted
    if opt.variable:
        assert options.resolve({}, {opt.variable: text}, {})[opt.name] == wanted
    if opt.toml:
        section, key = opt.toml.split(".")
        assert options.resolve({section: {key: wanted}}, {}, {})[opt.name] == wanted
    assert options.resolve({}, {}, {})[opt.name] == opt.default  # and nothing given: the default


def test_a_variable_of_the_wrong_type_names_itself() -> None:
    with pytest.raises(SettingsError, match="TRIOPROXY_PORT = 'eighty': not an integer"):
        load(None, {}, {"TRIOPROXY_PORT": "eighty"})
    with pytest.raises(SettingsError, match="TRIOPROXY_EARLY_HEADERS"):
        load(None, {}, {"TRIOPROXY_EARLY_HEADERS": "maybe"})
    assert load(None, {}, {"TRIOPROXY_EARLY_HEADERS": "yes"}).proxy.early_headers


def test_the_command_line_parses_into_every_option() -> None:
    args = _parser().parse_args(["serve", "--port", "9", "--api-key", "a", "--api-key", "b"])
    assert {o.name for o in options.OPTIONS} <= set(vars(args))
    settings = load(None, {o.name: getattr(args, o.name) for o in options.OPTIONS}, {})
    assert (settings.port, settings.proxy.api_keys) == (9, frozenset({"a", "b"}))
