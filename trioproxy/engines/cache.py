"""Where ``scripts/engines/install.sh`` puts the engines and the tiny model.

The layout is the script's; this module only finds it, so that a test or a
benchmark can say exactly what is missing and how to install it."""

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENGINES", "Installed", "engines_root", "find_installed"]

ENGINES = ("vllm", "llama.cpp")
INSTALL = "bash scripts/engines/install.sh"


def engines_root() -> Path:
    """The cache: ``$TRIOPROXY_ENGINES``, else ``~/.cache/trioproxy-engines``."""
    configured = os.environ.get("TRIOPROXY_ENGINES")
    return Path(configured) if configured else Path.home() / ".cache" / "trioproxy-engines"


@dataclass(frozen=True)
class Installed:
    """What one engine needs to start, all of it present on disk."""

    engine: str
    executable: Path  # vLLM's Python, or llama-server
    model: Path  # the Hugging Face folder (vLLM) or the GGUF file (llama.cpp)


def find_installed(engine: str, root: Path | None = None) -> Installed | str:
    """The engine's files, or why they are not there (one line, with the fix)."""
    root = root or engines_root()
    if engine == "vllm":
        found = Installed(engine, root / "vllm-venv/bin/python", root / "models/tiny-llama")
        steps = ("vllm", "models")
    elif engine == "llama.cpp":
        server = root / "llama.cpp/build/bin/llama-server"
        found = Installed(engine, server, root / "models/tiny-llama.gguf")
        steps = ("llama.cpp", "models")
    else:
        raise ValueError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    missing = [step for step in steps if not (root / "stamps" / step).is_file()]
    missing += [str(p) for p in (found.executable, found.model) if not p.exists()]
    if missing:
        return f"{engine} is not installed in {root} (missing {', '.join(missing)}): run {INSTALL}"
    return found
