"""The race and the relay: one client request, one upstream request.

:mod:`.race` holds the promise (:class:`~.race.Relay` and its watcher);
:mod:`.paths` checks the client's path; :mod:`.forward` copies the answer;
:mod:`.answers` is what the client gets when something fails.
"""
