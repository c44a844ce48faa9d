"""The versions of hypercorn, h11 and h2 this server was built against, checked at start-up.

The server subclasses hypercorn's connection and protocol classes and
overrides some of their private methods; its HTTP/1.1 connection
(:mod:`.guards.h1_connection`) stands in for h11's, with h11's public events
and states, which hypercorn's read loop expects. A release that renames a
method or changes those would silently turn a guard off, or fail on some
request long after start-up: so a server refuses
to start on any version outside the ranges here, with one clear line.
Widening a range means reading the release's changes to those classes and
running the guards' tests (``tests/test_server_build.py`` names the names).
"""

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

__all__ = ["BUILT_FOR", "IncompatibleVersions", "check_versions"]

BUILT_FOR: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "hypercorn": ((0, 18), (0, 19)),
    "h11": ((0, 16), (0, 17)),
    "h2": ((4, 1), (5, 0)),
}
"""Per distribution, the lowest (major, minor) supported and the first that is not."""


class IncompatibleVersions(RuntimeError):
    """An installed hypercorn, h11 or h2 is outside the versions the server was built
    for: the installation's fault, found before anything is served."""


def _release(text: str) -> tuple[int, int] | None:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def _show(release: tuple[int, int]) -> str:
    return f"{release[0]}.{release[1]}"


def check_versions(installed: Callable[[str], str] = version) -> None:
    """Raise :class:`IncompatibleVersions` naming every distribution out of range."""
    wrong = []
    for name, (low, high) in BUILT_FOR.items():
        try:
            found = installed(name)
        except PackageNotFoundError:
            found = "none"
        release = _release(found)
        if release is None or not low <= release < high:
            wrong.append(f"{name} {found} (needs >={_show(low)},<{_show(high)})")
    if wrong:
        raise IncompatibleVersions(
            "the server was built for other versions than installed: " + ", ".join(wrong)
        )
