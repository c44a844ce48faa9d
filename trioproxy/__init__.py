"""trioproxy: an OpenAI-compatible streaming reverse proxy.

When a client stops a request, trioproxy closes the upstream connection at once.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
