"""The race and the relay: one client request, one upstream request.

:mod:`.race` holds the promise (:class:`~.race.Relay` and its watcher);
:mod:`.forward` copies the answer; :mod:`.answers` and :mod:`.errors` are
what the client gets when something fails; :mod:`.record` is the request's
record (outcome, phase, timings), logged once at its end.
"""
