"""The proxy: what a request meets, top-down.

- :mod:`.app`: the ASGI app on the shared server (:mod:`trioproxy.server`):
  ``/v1/`` to the relay, the rest (health, metrics, admin) to Quart.
- :mod:`.gateway`: the policy in front of the relay: client keys and their
  limits, path checks, routing by model, balancing, settings.
- :mod:`.relay`: the promise. One nursery per request; the relay and the
  watcher race, and a client's stop closes the upstream in every phase.
- :mod:`.upstream`: the upstream client: h11 on trio streams, a per-origin
  pool that never reuses a connection whose answer was not read to the end.
- :mod:`.admin`: what operators see across workers: requests in flight,
  metrics, the live page.
- :mod:`.workers`: several processes on one port, seen as one server.
"""
