"""``GET /v1/models`` when requests are routed by model: exactly the models a request
could be routed to.

The list is built from the routing rules (:func:`routable_list`): first every
exact name the upstreams' ``models`` give, in configured order, then what
each upstream with a glob (``llama-*``, the catch-all ``*``) reports from its
own ``/v1/models``, kept only where routing would send that name back to it
(or a replica): a name another upstream claims first, or one its pattern does
not take, is left out, so a listed model is never answered 404
``model_not_found``. A wildcard upstream that cannot be asked is left out
(its exact names stay listed); the forwarder logs that once, not on every listing.

An upstream's list is taken whole or not at all: an answer that is not 200,
not JSON, too large, or not shaped as OpenAI's list (a ``data`` list of
objects, each with an ``id`` that is a short string) drops that upstream
from the merged list, and the others' models are still listed. Each model
is encoded again here, so whatever an upstream sent that cannot be written
back (a ``NaN``, nesting past the recursion limit) drops its list too,
never the merged answer.
"""

import json
from collections.abc import Iterable, Mapping

from trioproxy.proxy.upstream.routing import Router

__all__ = [
    "MAX_LIST_BYTES",
    "MAX_MODELS",
    "MAX_MODEL_ID",
    "OddModelList",
    "listed_models",
    "merged_list",
    "routable_list",
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


def routable_list(router: Router, lists: Mapping[str, dict[str, bytes]]) -> bytes:
    """The merged list: exact names, then what each wildcard upstream reported
    (``lists``, by upstream name) that routing sends back to it."""
    models: dict[str, bytes] = {}
    for name, upstream in router.exact_names():
        # The upstream's own object when it listed the name; else a plain one.
        models[name] = lists.get(upstream.name, {}).get(name) or _plain_model(name, upstream.name)
    for upstream in router.wildcards():  # configured order, whoever answered first
        for model_id, model in lists.get(upstream.name, {}).items():
            if model_id not in models and router.serves(upstream, model_id):
                models[model_id] = model
    return merged_list(models.values())


def _plain_model(name: str, owner: str) -> bytes:
    # OpenAI's model object has all four; "created" is 0: the proxy cannot know it.
    return json.dumps({"id": name, "object": "model", "created": 0, "owned_by": owner}).encode()


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
