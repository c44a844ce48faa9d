"""The body's top-level model, scanned from large bodies: the same name that
``json.loads`` reads, at most MODEL_MAX + 1 characters of it, in linear time."""

import json
import tracemalloc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.proxy.core.bounded import MODEL_MAX
from trioproxy.proxy.relay import model_field
from trioproxy.proxy.relay.model_field import SCANNED_FROM, top_level_model

_text = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(["model", 'mod"el'])
_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text
_json = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)
_long = st.text(st.characters(codec="utf-8"), min_size=MODEL_MAX - 5, max_size=MODEL_MAX + 600)
_model = _text | _long


def _expected(document: Any) -> str | None:
    model = document.get("model") if isinstance(document, dict) else None
    return model[: MODEL_MAX + 1] if isinstance(model, str) else None


@settings(max_examples=300, deadline=None)
@given(
    document=st.dictionaries(_text, _json, max_size=5),
    model=_model | _json,
    where=st.integers(0, 5),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
)
def test_the_scan_reads_what_json_loads_reads(
    document: dict[str, Any], model: Any, where: int, ascii_only: bool, indent: int | None
) -> None:
    items = list(document.items())
    items.insert(min(where, len(items)), ("model", model))
    whole = dict(items)
    body = json.dumps(whole, ensure_ascii=ascii_only, indent=indent).encode()
    # The scan itself, whatever the size: padded past SCANNED_FROM it takes the large path.
    assert model_field._scanned(body) == _expected(whole)
    padded = body[:-1] + b', "pad": "' + b"p" * SCANNED_FROM + b'"}'
    assert top_level_model(padded) == _expected(json.loads(padded))
    assert top_level_model(body) == _expected(whole)


def test_a_16_mib_model_is_read_from_a_prefix() -> None:
    body = json.dumps({"messages": [{"model": "nested"}], "model": "é" * (16 << 20)}).encode()
    assert top_level_model(body) == "é" * (MODEL_MAX + 1)


def test_what_is_no_object_or_no_string_gives_none() -> None:
    pad = b" " * SCANNED_FROM
    not_one = [b"[" + pad + b'{"model": "m"}]', b'{"model": 5}' + pad]
    not_one.append(b'{"x": {"model": "m"}}' + pad)
    for body in not_one:
        assert top_level_model(body) is None, body[:30]


def test_a_16_mib_model_costs_no_copy_of_itself() -> None:
    body = json.dumps({"model": "x" * (16 << 20), "messages": []}).encode()
    tracemalloc.start()
    try:
        assert top_level_model(body) == "x" * (MODEL_MAX + 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # json.loads held the body's text and the name: 32 MiB
