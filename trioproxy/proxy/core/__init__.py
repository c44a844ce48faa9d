"""The request core: what every layer of the proxy shares, at the bottom of it.

- :mod:`.record`: the request's record (its phase, outcome and timings), the
  :class:`~.record.Outcome` set and the one access line;
- :mod:`.errors`: the OpenAI-style JSON error body;
- :mod:`.bounded`: the caps on every outside value kept, and the one-line log formatter.

Nothing here imports another package of the proxy.
"""
