"""HTTP/1.1 requests as an attacker or a careless client writes them.

Mostly valid structure, each part mutated on its own: the method, the path
(percent-escapes of control bytes, raw control bytes, dot segments), the
version, header names and values, the framing headers (lengths that lie,
both framings, odd codings), chunked bodies with odd sizes and extensions,
JSON bodies with an odd ``model`` or ``stream``. Sent in a few cut pieces.
"""

import json
from dataclasses import dataclass

from hypothesis import strategies as st

__all__ = ["H1Case", "h1_cases", "json_bodies", "mostly", "odd_models"]

_METHODS = [b"GET", b"POST", b"DELETE", b"PUT", b"PATCH", b"HEAD", b"OPTIONS"]
_ODD_METHODS = [b"TRACE", b"TRACK", b"PROPFIND", b"CONNECT", b"M-SEARCH", b"post", b"G\xc3\xa9T"]
_PATHS = [
    b"/v1/chat/completions",
    b"/v1/completions",
    b"/v1/embeddings",
    b"/v1/models",
    b"/v1/models/m",
    b"/health",
    b"/metrics",
    b"/admin/",
    b"/admin/requests",
    b"/admin/requests/x",
    b"/",
    b"*",
    b"http://127.0.0.1/v1/models",
    b"127.0.0.1:80",
]
# What percent-escapes and raw bytes a forger or a broken client puts in a path.
_PATH_BITS = [
    b"%0d%0a2099-01-01 00:00:00,000 INFO trioproxy.access: FORGED",
    b"%00",
    b"%1b[31m",
    b"%7f",
    b"%c2%85",
    b"%e2%80%a8",
    b"%ff",
    b"%2e%2e/",
    b"%2f",
    b"%25",
    b"/../admin/requests",
    b"?x=%0a",
    b"\x01",
    b"\x1b",
    b"\x7f",
    b"\xc2\x85",
    b"\xff",
    b" ",
    b"\t",
]
_VERSIONS = [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"http/1.1", b""]
_NAMES = st.sampled_from(
    [b"x-a", b"accept", b"user-agent", b"x-request-id", b"authorization", b"cookie", b"x-sim-id"]
) | st.binary(min_size=1, max_size=20).filter(lambda b: b.isalnum())  # a name h11 parses
_ODD_FRAMING = [
    (b"content-length", b"-1"),
    (b"content-length", b"5, 5"),
    (b"content-length", b"99999999999999999999"),
    (b"transfer-encoding", b"gzip, chunked"),
    (b"transfer-encoding", b"chunked, identity"),
    (b"transfer-encoding", b" chunked"),
    (b"expect", b"100-continue"),
    (b"upgrade", b"h2c"),
    (b"http2-settings", b"AAMAAABkAAQAAP__"),
    (b"http2-settings", b"!!"),
    (b"connection", b"upgrade, http2-settings"),
]
_VALUES = st.sampled_from([b"", b"text/event-stream", b"a\x01b", b"\xc2\x85", b"\xff\xfe"]) | (
    st.binary(max_size=64).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
)


def mostly[T](draw: st.DrawFn, usual: T, odd: st.SearchStrategy[T], one_in: int = 4) -> T:
    """``usual``, or one in ``one_in`` times a mutation: most cases must reach the relay."""
    return draw(odd) if draw(st.integers(1, one_in)) == 1 else usual


def odd_models() -> st.SearchStrategy[object]:
    """``model`` values: ordinary, forged, long, or not a string."""
    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
    return st.one_of(
        st.sampled_from(["sim-small", "fuzz-b-1", "gpt-4o", "m\r\n2099 INFO FORGED", "\x1b[2J"]),
        text,
        st.integers(1, 64).map(lambda k: "m" * (1024 * k)),  # 1 KiB to 64 KiB
        st.none(),
        st.integers(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """A chat body, its ``model`` and ``stream`` mostly ordinary; now and then not JSON."""
    odd = st.sampled_from([b"", b"{", b"[]", b"null", b'{"model": "a"' + b"]" * 3, b"\xff"])
    deep = st.integers(1, 2000).map(lambda n: b'{"model": ' * n)
    if draw(st.integers(1, 6)) == 1:
        return draw(odd | deep)
    body: dict[str, object] = {
        "model": mostly(draw, "m", odd_models(), 2),
        "messages": [{"role": "user", "content": "hi"}],
    }
    stream: st.SearchStrategy[object] = st.sampled_from([True, False, None, "yes", 1, 0, [], {}])
    body["stream"] = mostly(draw, draw(st.booleans()), stream)
    if draw(st.booleans()):
        body["max_tokens"] = draw(st.integers(-(2**70), 2**70))
    return json.dumps(body).encode()


@st.composite
def _chunked(draw: st.DrawFn, body: bytes) -> bytes:
    pieces = draw(st.lists(st.integers(1, 64), max_size=4))
    out, at = b"", 0
    for size in pieces:
        piece, at = body[at : at + size], at + size
        size_text = draw(
            st.sampled_from([b"%x" % len(piece), b"%X" % len(piece), b"00%x" % len(piece)])
            | st.sampled_from([b"-1", b"ffffffffffffffffff", b"10000000000000000", b"zz", b""])
        )
        extension = draw(st.sampled_from([b"", b";a=b", b';a="\x01"', b"; x"]))
        out += size_text + extension + b"\r\n" + piece + b"\r\n"
    out += b"%x\r\n%s\r\n" % (len(body[at:]), body[at:]) if at < len(body) else b""
    end = draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nx-t: 1\r\n\r\n", b"0\r\n", b""]))
    return out + end


@dataclass(frozen=True)
class H1Case:
    pieces: list[bytes]
    """The request's bytes, cut where a case chose; sent one after another."""

    def __repr__(self) -> str:
        return f"H1Case({b''.join(self.pieces)!r}, cuts={[len(p) for p in self.pieces]})"


@st.composite
def h1_cases(draw: st.DrawFn) -> H1Case:
    method = mostly(draw, b"POST", st.sampled_from(_METHODS) | st.sampled_from(_ODD_METHODS), 3)
    path = mostly(draw, b"/v1/chat/completions", st.sampled_from(_PATHS), 3)
    bits = st.lists(st.sampled_from(_PATH_BITS), min_size=1, max_size=3)
    path += b"".join(mostly(draw, [], bits))
    version = mostly(draw, b"HTTP/1.1", st.sampled_from(_VERSIONS), 8)
    newline = mostly(draw, b"\r\n", st.just(b"\n"), 8)
    body = draw(json_bodies())
    headers = [(b"host", mostly(draw, b"h", st.sampled_from([b"", b"a\x00b", b"h, h"]), 8))]
    framing = mostly(
        draw, "length", st.sampled_from(["chunked", "chunked", "both", "lying", "odd", "none"]), 2
    )
    if framing == "chunked" or framing == "both":
        headers.append((b"transfer-encoding", b"chunked"))
        wire = draw(_chunked(body))
    else:
        wire = body
    if framing in ("length", "both"):
        headers.append((b"content-length", b"%d" % len(body)))
    elif framing == "lying":
        headers.append((b"content-length", b"%d" % draw(st.integers(0, len(body) + 8))))
    elif framing == "odd":
        headers += draw(st.lists(st.sampled_from(_ODD_FRAMING), min_size=1, max_size=4))
    headers += draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=4))
    if draw(st.integers(0, 3)):
        headers.append((b"content-type", b"application/json"))
    lines = [method + b" " + path + (b" " + version if version else b"")]
    lines += [name + b": " + value for name, value in draw(st.permutations(headers))]
    raw = newline.join(lines) + newline + newline + wire
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=3)))
    return H1Case([raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True) if b > a])
