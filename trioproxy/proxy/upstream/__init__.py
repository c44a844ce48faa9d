"""The upstream side: which upstream serves a request (:mod:`.routing`, :mod:`.balance`),
and the client that speaks to it: HTTP/1.1 on trio streams over a per-origin pool
(:mod:`.pool`, of :mod:`.connection`'s connections); one request and its response
is an :mod:`.exchange`, whose life is :mod:`.state`'s and whose failures are
:mod:`.errors`'; the wire format in :mod:`.http11` and :mod:`.chunked`, and the
headers that go up and come back in :mod:`.headers`. It knows nothing of the
proxy's client."""
