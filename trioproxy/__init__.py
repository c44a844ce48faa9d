"""trioproxy: an OpenAI-compatible streaming reverse proxy whose client stop reaches the upstream at once."""

__version__ = "0.1.0"
__all__ = ["__version__"]
