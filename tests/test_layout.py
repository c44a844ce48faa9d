"""The rule for which part may import which, checked against the code (docs/architecture.md)."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "trioproxy"

# What each part may import from the project; anything else in trioproxy or
# benchmarks is refused. The entry points (cli, demo) may import anything.
ALLOWED: dict[str, tuple[str, ...]] = {
    "trioproxy.asgi": (),
    "trioproxy.server": ("trioproxy.asgi", "trioproxy.server"),
    "trioproxy.sim": ("trioproxy.asgi", "trioproxy.server", "trioproxy.sim"),
    "trioproxy.conformance": ("trioproxy.asgi", "trioproxy.sim", "trioproxy.conformance"),
    "trioproxy.proxy": ("trioproxy", "trioproxy.asgi", "trioproxy.server", "trioproxy.proxy"),
    "trioproxy.engines": ("trioproxy.conformance", "trioproxy.engines"),
}


def _module(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in ("trioproxy", "benchmarks")}


def _part(module: str) -> str | None:
    for part in sorted(ALLOWED, key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    return None


def _allowed(imported: str, allowed: tuple[str, ...]) -> bool:
    # "trioproxy" alone allows the package's own __init__ (its version), not all of it.
    return any(
        imported == a or (a != "trioproxy" and imported.startswith(f"{a}.")) for a in allowed
    )


def test_every_module_belongs_to_a_part_or_is_an_entry_point() -> None:
    entry_points = {"trioproxy", "trioproxy.__main__", "trioproxy.cli", "trioproxy.demo"}
    loose = [
        _module(p)
        for p in PACKAGE.rglob("*.py")
        if _part(_module(p)) is None and _module(p) not in entry_points
    ]
    assert loose == []


def test_each_part_imports_only_what_its_rule_allows() -> None:
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = _part(_module(path))
        if part is None:
            continue  # an entry point
        broken += [
            f"{_module(path)} imports {name}"
            for name in sorted(_imports(path))
            if not _allowed(name, ALLOWED[part])
        ]
    assert broken == []


def test_the_rule_is_not_vacuous() -> None:
    """The checker reaching into the proxy would be caught."""
    assert not _allowed("trioproxy.proxy.relay.race", ALLOWED["trioproxy.conformance"])
    assert not _allowed("trioproxy.conformance", ALLOWED["trioproxy.proxy"])
    assert not _allowed("benchmarks.report", ALLOWED["trioproxy.proxy"])
    assert not _allowed("trioproxy.sim", ALLOWED["trioproxy.proxy"])
    assert _imports(PACKAGE / "conformance" / "runner.py") >= {"trioproxy.sim"}


def test_benchmarks_and_the_demo_use_the_checker_and_the_simulator_by_public_names() -> None:
    public = {"trioproxy.conformance", "trioproxy.sim"}
    paths = [*(ROOT / "benchmarks").rglob("*.py"), PACKAGE / "demo.py"]
    inner = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in paths
        for name in sorted(_imports(path))
        if any(name.startswith(f"{p}.") for p in public)
    ]
    assert inner == []


# Inside the proxy, each package imports only the ones below it (the order a
# request meets them, read bottom-up); admin only observes records, and nothing
# below the top imports it. The top (app, workers) puts them together.
_P = "trioproxy.proxy."
LAYERS: dict[str, tuple[str, ...]] = {
    _P + "core": (),
    _P + "upstream": ("core",),
    _P + "relay": ("core", "upstream"),
    _P + "gateway": ("core", "upstream", "relay"),
    _P + "admin": ("core", "gateway"),
}
TOP = {_P + "app", _P + "workers"}


def _package(module: str) -> str | None:
    """The proxy's package a module is in (``trioproxy.proxy.relay``), the top's own
    module name, or None outside the proxy (and for the proxy's ``__init__``)."""
    if not module.startswith(_P):
        return None
    return _P + module.removeprefix(_P).split(".")[0]


def _proxy_edges() -> set[tuple[str, str, str]]:
    """(importing module, its package, imported package) inside the proxy."""
    edges = set()
    for path in sorted((PACKAGE / "proxy").rglob("*.py")):
        module = _module(path)
        package = _package(module)
        if package is None:
            continue
        for name in _imports(path):
            imported = _package(name)
            if imported is not None and imported != package:
                edges.add((module, package, imported))
    return edges


def _layer_allows(package: str, imported: str) -> bool:
    if package in TOP:
        return True
    return imported.removeprefix(_P) in LAYERS.get(package, ())


def test_every_proxy_package_has_a_layer() -> None:
    found = {_package(_module(p)) for p in (PACKAGE / "proxy").rglob("*.py")} - {None}
    assert found == set(LAYERS) | TOP


def test_inside_the_proxy_each_layer_imports_only_the_layers_below_it() -> None:
    broken = [
        f"{module} imports {imported}"
        for module, package, imported in sorted(_proxy_edges())
        if not _layer_allows(package, imported)
    ]
    assert broken == []


def test_the_proxy_has_no_package_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for _, package, imported in _proxy_edges():
        graph.setdefault(package, set()).add(imported)
    done: set[str] = set()

    def cycle_from(node: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        if node in path:
            return (*path[path.index(node) :], node)
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            if found := cycle_from(nxt, (*path, node)):
                return found
        done.add(node)
        return None

    cycles = [c for p in sorted(graph) if (c := cycle_from(p, ()))]
    assert cycles == []


def test_the_layer_rule_is_not_vacuous() -> None:
    """The relay reaching up into the gateway, the upstream client into the relay,
    or the core into anything would be caught; admin is below nothing but the top."""
    assert not _layer_allows(_P + "relay", _P + "gateway")
    assert not _layer_allows(_P + "upstream", _P + "relay")
    assert not _layer_allows(_P + "core", _P + "upstream")
    assert not any(_layer_allows(p, _P + "admin") for p in LAYERS)
    assert (_P + "relay.forward", _P + "relay", _P + "upstream") in _proxy_edges()


def _test_imports(path: pathlib.Path) -> set[str]:
    """The ``tests`` modules ``path`` imports, at any depth of the file (a test
    may import inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.add("." * node.level + (node.module or ""))  # relative: refused below
    return {name for name in found if name.startswith(("tests", "."))}


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in ``tests/helpers`` (fixtures in a ``conftest.py``):
    a test module imported by another runs its tests' module code twice and
    ties one file's tests to another's internals."""
    tests = ROOT / "tests"
    broken = [
        (str(path.relative_to(ROOT)), imported)
        for path in tests.rglob("*.py")
        for imported in sorted(_test_imports(path))
        if imported.startswith(".") or imported.rsplit(".", 1)[-1].startswith("test_")
    ]
    assert broken == []
