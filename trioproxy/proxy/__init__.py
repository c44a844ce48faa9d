"""The proxy: what a request meets, top-down (each package imports only those below it).

- :mod:`.app`: the ASGI app on the shared server (:mod:`trioproxy.server`):
  ``/v1/`` to the relay, the rest (health, metrics, admin) to Quart.
- :mod:`.gateway`: the policy in front of the relay: client keys and their
  limits, settings.
- :mod:`.relay`: the promise. One nursery per request; the relay and the
  watcher race, and a client's stop closes the upstream in every phase.
- :mod:`.upstream`: which upstream serves a request, and the client that
  speaks to it: HTTP/1.1 on trio streams, a per-origin pool that never
  reuses a connection whose answer was not read to the end.
- :mod:`.core`: what every layer shares: the request's record, its outcome,
  its one stop, the error body, the bounds on outside values.
- :mod:`.admin`: what operators see across workers (requests in flight,
  metrics, the live page): observers of the records, imported by nothing
  but the top.
- :mod:`.workers`: several processes on one port, seen as one server.
"""
