"""The fuzzer that keeps issue 18's rule, apart from the tests that drive it.

``live`` runs the proxy as its own process and checks it after each case;
``upstream`` is the raw socket upstream behind it; ``requests``, ``frames``
and ``answers`` are the hypothesis strategies for HTTP/1.1 requests, HTTP/2
frame sequences and upstream answers; ``budget`` says how many cases a run
gets. ``tests/test_fuzz.py`` puts them together.
"""
