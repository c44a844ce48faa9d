"""Every recipe in docs/upstreams.md loads with the settings loader and gives the
upstream it says: its URL, where its key goes, its headers and its query.

External hosts cannot be reached here: this holds the recipes' shape, and
``tests/test_providers.py`` proves the conventions on the wire with the SDKs.
"""

import pathlib
import re
import tomllib

import pytest

from trioproxy.proxy.gateway.settings import load

DOC = pathlib.Path(__file__).parent.parent / "docs" / "upstreams.md"
_SECTION = re.compile(r"^## (.+)$", re.M)
_TOML = re.compile(r"```toml\n(.*?)```", re.S)

# name: (URL, key header and how the key goes, added headers (beside the key), query)
EXPECTED = {
    "openai": (
        "https://api.openai.com/v1",
        (b"authorization", b"Bearer sk-OPENAI_API_KEY"),
        {b"openai-organization": b"org-EXAMPLE", b"openai-project": b"sk-OPENAI_PROJECT"},
        b"",
    ),
    "anthropic": (
        "https://api.anthropic.com/v1",
        (b"x-api-key", b"sk-ANTHROPIC_API_KEY"),
        {b"anthropic-version": b"2023-06-01"},
        b"",
    ),
    "azure-gpt-4o": (
        "https://RESOURCE.openai.azure.com/openai/deployments/gpt-4o-prod",
        (b"api-key", b"sk-AZURE_OPENAI_API_KEY"),
        {},
        b"api-version=2024-10-21",
    ),
    "azure-v1": (
        "https://RESOURCE.openai.azure.com/openai/v1",
        (b"api-key", b"sk-AZURE_OPENAI_API_KEY"),
        {},
        b"",
    ),
    "gemini": (
        "https://generativelanguage.googleapis.com/v1beta/openai",
        (b"authorization", b"Bearer sk-GEMINI_API_KEY"),
        {},
        b"",
    ),
    "openrouter": (
        "https://openrouter.ai/api/v1",
        (b"authorization", b"Bearer sk-OPENROUTER_API_KEY"),
        {b"http-referer": b"https://chat.example.com", b"x-title": b"Example Chat"},
        b"",
    ),
    "vllm": (
        "http://127.0.0.1:8001/v1",
        (b"authorization", b"Bearer sk-VLLM_API_KEY"),
        {},
        b"",
    ),
    "llama-cpp": ("http://127.0.0.1:8080/v1", None, {}, b""),
    "ollama": ("http://127.0.0.1:11434/v1", None, {}, b""),
    "lm-studio": ("http://127.0.0.1:1234/v1", None, {}, b""),
}
PROVIDERS = (
    "OpenAI",
    "Anthropic",
    "Azure OpenAI",
    "Gemini",
    "OpenRouter",
    "vLLM",
    "llama.cpp",
    "Ollama",
    "LM Studio",
)


def recipes() -> dict[str, str]:
    """Each ``toml`` block of the doc, by its upstream's name."""
    blocks = {}
    for block in _TOML.findall(DOC.read_text()):
        (table,) = tomllib.loads(block)["upstream"]
        blocks[table["name"]] = block
    return blocks


def test_every_provider_has_a_recipe_and_every_recipe_is_checked() -> None:
    sections = _SECTION.findall(DOC.read_text())
    for provider in PROVIDERS:
        assert any(s.startswith(provider) for s in sections), provider
    assert set(recipes()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_recipe_loads_as_the_upstream_it_says(tmp_path: pathlib.Path, name: str) -> None:
    block = recipes()[name]
    (table,) = tomllib.loads(block)["upstream"]
    variables = [table.get("api_key_env"), *table.get("headers_env", {}).values()]
    env = {v: f"sk-{v}" for v in variables if v}
    path = tmp_path / "trioproxy.toml"
    path.write_text(block)
    (upstream,) = load(str(path), {}, env).proxy.router().upstreams
    url, key, headers, query = EXPECTED[name]
    assert upstream.url == url
    added = dict(upstream.conventions.added)
    if key is not None:
        assert added.pop(key[0]) == key[1]
    assert added == headers
    assert upstream.conventions.query == query
    # Whatever the client sent as credentials is the proxy's, never the upstream's.
    assert {b"authorization", b"x-api-key", b"api-key"} <= upstream.conventions.drop_credentials
