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
