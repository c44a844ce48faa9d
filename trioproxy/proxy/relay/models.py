"""``GET /v1/models`` across upstreams: each upstream's list, checked whole before it is merged.

An upstream's list is taken whole or not at all: an answer that is not 200,
not JSON, too large, or not shaped as OpenAI's list (a ``data`` list of
objects, each with an ``id`` that is a short string) drops that upstream
from the merged list, and the others' models are still listed. Each model
is encoded again here, so whatever an upstream sent that cannot be written
back (a ``NaN``, nesting past the recursion limit) drops its list too,
never the merged answer.
"""

import json
from collections.abc import Iterable

__all__ = [
    "MAX_LIST_BYTES",
    "MAX_MODELS",
    "MAX_MODEL_ID",
    "OddModelList",
    "listed_models",
    "merged_list",
]

MAX_LIST_BYTES = 4 * 1024 * 1024
"""The longest list read from one upstream."""
MAX_MODELS = 10_000
MAX_MODEL_ID = 256
"""Characters in a model's ``id``."""


class OddModelList(ValueError):
    """An upstream answered no model list that can be merged: the upstream's fault."""


def listed_models(status: int, body: bytes) -> dict[str, bytes]:
    """One upstream's models: each id with the model's object as JSON, in its order."""
    if status != 200:
        raise OddModelList(f"it answered {status}")
    if len(body) > MAX_LIST_BYTES:
        raise OddModelList(f"its list is over {MAX_LIST_BYTES} bytes")
    try:
        answer = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise OddModelList("its list is not JSON") from exc
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise OddModelList('its "data" is not a list')
    if len(data) > MAX_MODELS:
        raise OddModelList(f"it lists over {MAX_MODELS} models")
    models: dict[str, bytes] = {}
    for model in data:
        model_id = model.get("id") if isinstance(model, dict) else None
        if not isinstance(model_id, str) or not 0 < len(model_id) <= MAX_MODEL_ID:
            raise OddModelList(f"a model is no object with an id of 1 to {MAX_MODEL_ID} characters")
        try:
            models.setdefault(model_id, json.dumps(model).encode())
        except (ValueError, RecursionError) as exc:
            raise OddModelList("a model cannot be written back as JSON") from exc
    return models


def merged_list(models: Iterable[bytes]) -> bytes:
    return b'{"object": "list", "data": [' + b", ".join(models) + b"]}"


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
