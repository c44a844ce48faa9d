"""The request core: what every layer of the proxy shares, at the bottom of it.

- :mod:`.record`: the request's record (its phase, outcome and timings) and
  the one access line; :mod:`.outcome`: the :class:`~.outcome.Outcome` and
  :class:`~.outcome.Phase` sets;
- :mod:`.requests`: where every record begins and ends, and who observes it;
- :mod:`.stop`: the one owner of "this request is over";
- :mod:`.errors`: the OpenAI-style JSON error body;
- :mod:`.bounded`: the caps on every outside value kept, and the one-line log formatter;
- :mod:`.lines`: the log's two formats, text and JSON; :mod:`.request_id`: the ``x-request-id``;
- :mod:`.tally`: counts every worker of one server shares.

Nothing here imports another package of the proxy.
"""
