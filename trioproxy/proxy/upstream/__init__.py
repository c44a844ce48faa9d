"""The upstream client: HTTP/1.1 on trio streams over a per-origin pool (:mod:`.pool`;
the wire format in :mod:`.http11` and :mod:`.chunked`),
and the headers that go up and come back (:mod:`.headers`)."""
