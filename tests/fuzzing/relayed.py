"""What a client may be sent, whatever the upstream wrote (issue 18, item 4).

The answer the proxy relays is checked as an HTTP/1.1 client would read it:
a status the client can interpret, one framing only, no body past the
declared length, no body headers on 204 and 304.
"""

__all__ = ["check_relayed"]


def check_relayed(answer: bytes) -> None:
    """Assert the rules on one whole HTTP/1.1 answer (read to the proxy's close)."""
    while answer[9:10] == b"1" and b"\r\n\r\n" in answer:  # 1xx heads before the final one
        answer = answer.partition(b"\r\n\r\n")[2]
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return  # cut before its head ended: the client sees a broken answer, not a lie
    status_line, *lines = head.split(b"\r\n")
    status = int(status_line.split(b" ")[1])
    fields = [line.partition(b":") for line in lines]
    names = [name.strip().lower() for name, _, _ in fields]
    lengths = [
        value.strip() for name, _, value in fields if name.strip().lower() == b"content-length"
    ]
    assert 100 <= status <= 599, f"status {status} relayed"
    assert not (lengths and b"transfer-encoding" in names), f"both framings relayed: {head!r}"
    assert len(set(lengths)) <= 1, f"lengths that disagree relayed: {head!r}"
    if lengths and b"transfer-encoding" not in names:
        assert len(body) <= int(lengths[0]), f"{len(body)} body bytes past content-length: {head!r}"
    if status in (204, 304):
        assert not {b"content-length", b"transfer-encoding"} & set(names), (
            f"body headers on {status}"
        )
