"""The folder a module lives in says which layer it is and what it may import.

Read every module's imports (statically: nothing is executed) and fail,
naming the module and the import, when:
- the pure core (gateway/core) or the views (gateway/views) import anything
  but themselves, the pure parts of the standard library and the pure
  third-party libraries listed below, or read the clock;
- any layer imports a layer it may not (a layer above it, or a sibling it
  has no business with);
- a module imports a ``_``-prefixed name from another package;
- a package does not declare its public names with ``__all__``.

The rules, one line per layer, are the table in README.md ("Where things are").
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# What each layer may import, besides itself. Dependencies point inward: the
# core imports nothing of ours; the CLI, at the top, may import everything.
LOWER = {
    "gateway.core": set(),
    "gateway.views": {"gateway.core"},
    "gateway.config": {"gateway.core"},
    "gateway.infra": {"gateway.core", "gateway.config"},
    "gateway.store": {"gateway.core", "gateway.config", "gateway.infra"},
    "gateway.broker": {"gateway.core", "gateway.config", "gateway.infra"},
    "gateway.services": {
        "gateway.core",
        "gateway.views",
        "gateway.config",
        "gateway.infra",
        "gateway.store",
        "gateway.broker",
    },
}
LOWER["gateway.intake"] = LOWER["gateway.services"] | {"gateway.services"}
LOWER["adapters"] = LOWER["gateway.services"] | {"gateway.services"}
# The console reads what the services read; it runs no service of its own but the queue poll.
LOWER["gateway.console"] = LOWER["gateway.services"] | {"gateway.services"}
LOWER["gateway.demo"] = LOWER["gateway.intake"] | {"gateway.intake", "adapters", "gateway.console"}
LOWER["gateway.cli"] = LOWER["gateway.demo"] | {"gateway.demo"}

# The standard library's pure parts: values in, values out. No asyncio, os,
# sockets, ssl, subprocess, threads, files (pathlib, tempfile, shutil), time.
PURE_STDLIB = {
    "__future__",
    "abc",
    "base64",
    "binascii",
    "bisect",
    "collections",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "functools",
    "hashlib",
    "hmac",
    "io",
    "itertools",
    "json",
    "math",
    "operator",
    "re",
    "secrets",
    "statistics",
    "string",
    "struct",
    "types",
    "typing",
    "unicodedata",
    "uuid",
    "zoneinfo",  # the time zone rules: read-only data, like a module
}
PURE_THIRD_PARTY = {"cryptography", "lxml", "stdnum"}
# The one place the core reads files: the schemas shipped inside the package,
# read-only and cached, as an import reads code.
PACKAGE_DATA = {"gateway.core.resources": {"importlib", "pathlib"}}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "time_ns"}
PURE_LAYERS = ("gateway.core", "gateway.views")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported from
    names: tuple[str, ...]
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> list[Path]:
    return sorted(p for top in ("gateway", "adapters") for p in (ROOT / top).rglob("*.py"))


def imports_in(source: str, module: str, is_package: bool = False) -> list[Import]:
    """Every import in ``source``, with relative ones resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            found.append(Import(module, target, tuple(a.name for a in node.names), node.lineno))
    return found


def imports_of(path: Path) -> list[Import]:
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def layer_of(module: str) -> str | None:
    if module == "adapters" or module.startswith("adapters."):
        return "adapters"
    parts = module.split(".")
    if parts[0] != "gateway" or len(parts) < 2:
        return None
    layer = ".".join(parts[:2])
    return layer if layer in LOWER else None


def targets_of(imp: Import) -> list[str]:
    """The modules an import names: ``from gateway import x`` imports gateway.x."""
    if imp.target in ("gateway", "adapters") and imp.names:
        return [f"{imp.target}.{n}" for n in imp.names]
    return [imp.target]


def where(path: Path, imp: Import) -> str:
    return f"{path.relative_to(ROOT)}:{imp.line} ({imp.module})"


def test_every_module_sits_in_a_layer() -> None:
    loose = [
        str(p.relative_to(ROOT))
        for p in sources()
        if layer_of(module_name(p)) is None
        and module_name(p) not in ("gateway", "gateway.__main__", "adapters")
    ]
    assert loose == [], "modules outside every layer folder"


def test_layers_import_only_layers_below_them() -> None:
    wrong = []
    for path in sources():
        layer = layer_of(module_name(path))
        if layer is None:
            continue
        for imp in imports_of(path):
            for target in targets_of(imp):
                target_layer = layer_of(target)
                if target.split(".")[0] not in ("gateway", "adapters"):
                    continue
                if target_layer is None or (
                    target_layer != layer and target_layer not in LOWER[layer]
                ):
                    wrong.append(f"{where(path, imp)} imports {target} ({target_layer})")
    assert wrong == [], "imports pointing outward:\n" + "\n".join(wrong)


def test_the_core_and_the_views_import_only_pure_libraries() -> None:
    wrong = []
    for path in sources():
        module = module_name(path)
        if layer_of(module) not in PURE_LAYERS:
            continue
        allowed = PURE_STDLIB | PURE_THIRD_PARTY | PACKAGE_DATA.get(module, set())
        for imp in imports_of(path):
            top = imp.target.split(".")[0]
            if top in ("gateway", "adapters"):
                continue
            if top not in allowed:
                wrong.append(f"{where(path, imp)} imports {imp.target}")
    assert wrong == [], "impure imports in the core:\n" + "\n".join(wrong)


def test_the_core_and_the_views_never_read_the_clock() -> None:
    calls = []
    for path in sources():
        if layer_of(module_name(path)) not in PURE_LAYERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CLOCK_CALLS
            ):
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno} calls .{node.func.attr}()")
    assert calls == [], "the pure core takes the time as a value:\n" + "\n".join(calls)


def test_no_module_imports_another_packages_private_names() -> None:
    wrong = []
    for path in sources():
        for imp in imports_of(path):
            if imp.target.split(".")[0] not in ("gateway", "adapters"):
                continue
            own_package = imp.module.rpartition(".")[0]
            if imp.target.startswith(own_package) and own_package:
                continue
            private = [n for n in imp.names if n.startswith("_")]
            if private:
                wrong.append(f"{where(path, imp)} imports {private} from {imp.target}")
    assert wrong == [], "\n".join(wrong)


def test_every_package_declares_its_public_names() -> None:
    missing = []
    for init in sorted(
        p for top in ("gateway", "adapters") for p in (ROOT / top).rglob("__init__.py")
    ):
        package = importlib.import_module(module_name(init))
        public = getattr(package, "__all__", None)
        if public is None:
            missing.append(f"{init.relative_to(ROOT)} has no __all__")
            continue
        for name in public:
            if not hasattr(package, name):
                try:
                    importlib.import_module(f"{package.__name__}.{name}")
                except ModuleNotFoundError:
                    missing.append(f"{init.relative_to(ROOT)}: __all__ names {name!r}, not there")
    assert missing == [], "\n".join(missing)


def test_the_reader_resolves_relative_imports_and_package_imports() -> None:
    """``from gateway import x`` and ``from ..services import y`` are read as what they import."""
    source = "from gateway import cli\nfrom ..services import router\nimport asyncio\n"
    found = [t for imp in imports_in(source, "gateway.core.probe") for t in targets_of(imp)]
    assert found == ["gateway.cli", "gateway.services", "asyncio"]
    assert layer_of("gateway.cli") not in LOWER["gateway.core"]
    assert layer_of("gateway.services") not in LOWER["gateway.core"]
