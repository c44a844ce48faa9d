"""The upstream client: h11 on trio streams over a per-origin pool (:mod:`.pool`),
and the headers that go up and come back (:mod:`.headers`)."""
