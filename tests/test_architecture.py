"""The layers, executable: an AST walk over the package that fails when an import crosses a line it must not.

Rules (docs/ARCHITECTURE.md):

1. The core never imports a shell (``cli/`` and the coming ``web/``, ``comfy/``, ``batch/``, ``generate/``).
2. A shell imports only the public face: names in ``latentbridge.__all__``, names in the ``__all__`` of a public
   module (no ``_`` in its dotted path), and its own package's ``_``-private helpers; one command never imports
   another command. A launcher (``cli/serve.py``) may import the public ``__all__`` of the shell it starts.
3. No module imports another module's ``_private`` name; a ``_private`` module is imported only from inside the
   package that holds it (``latentbridge._atomic`` anywhere in the core, ``latentbridge.files._read`` only from
   ``latentbridge.files``).
4. The package never imports itself through ``importlib`` / ``__import__`` (imports are static and typed).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import latentbridge

PACKAGE = Path(latentbridge.__file__).parent
SHELLS: tuple[str, ...] = ("cli", "web", "comfy", "batch", "generate")
# A command that starts another shell may import that shell's public face (its package __all__), nothing deeper.
LAUNCHERS: dict[str, tuple[str, ...]] = {"latentbridge.cli.serve": ("web",)}


@dataclass(frozen=True)
class Import:
    """One imported name: ``module`` (absolute, dotted), ``name`` ("" for ``import module``), where it is."""

    module: str
    name: str
    line: int


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports_of(tree: ast.AST, module: str, package: bool) -> list[Import]:
    """Every import of a parsed module, relative ones made absolute."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(alias.name, "", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts if package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out += [Import(base, alias.name, node.lineno) for alias in node.names]
    return out


def dynamic_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """``importlib.import_module(x)`` / ``import_module(x)`` / ``__import__(x)`` calls whose ``x`` is not a literal
    outside the package, as (line, what)."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name not in ("import_module", "__import__"):
            continue
        arg = node.args[0] if node.args else None
        literal = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
        if literal is None or literal == "latentbridge" or literal.startswith(("latentbridge.", ".")):
            out.append((node.lineno, ast.unparse(node)))
    return out


def all_names(module: str) -> set[str] | None:
    """The ``__all__`` a module of the package declares (a literal list or tuple), or None when it has none."""
    parts = module.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    if not file.is_file():
        return None
    for node in ast.parse(file.read_text()).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
            return {e.value for e in getattr(node.value, "elts", []) if isinstance(e, ast.Constant)}
    return None


def is_module(module: str) -> bool:
    path = PACKAGE.joinpath(*module.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def shell_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SHELLS else None


def violations(module: str, source: str, package: bool = False) -> list[str]:
    """Every rule the module of that name and source breaks, one line each."""
    tree = ast.parse(source)
    out = [f"{module}:{line}: imports the package dynamically: {what}" for line, what in dynamic_imports(tree)]
    shell = shell_of(module)
    for imp in imports_of(tree, module, package):
        target = imp.module
        if target != "latentbridge" and not target.startswith("latentbridge."):
            continue
        where = f"{module}:{imp.line}"
        full = f"{target}.{imp.name}" if imp.name and is_module(f"{target}.{imp.name}") else target
        name = imp.name if full == target else ""
        target_shell = shell_of(full)
        launched = (
            target_shell in LAUNCHERS.get(module, ())
            and full == f"latentbridge.{target_shell}"
            and name in (all_names(full) or set())
        )
        if target_shell is not None and target_shell != shell and not launched:
            out.append(f"{where}: {'the core' if shell is None else 'shell ' + shell} imports shell module {full}")
        private_parts = [i for i, p in enumerate(full.split(".")) if p.startswith("_")]
        if private_parts:
            owner = ".".join(full.split(".")[: private_parts[0]])
            if not module.startswith(owner + ".") and module != owner:
                out.append(f"{where}: imports {full}, a private module of {owner}")
        if name.startswith("_") and name != "__version__":
            out.append(f"{where}: imports the private name {name} from {full}")
        if shell is None:
            continue
        own = f"latentbridge.{shell}"
        if full == own or full.startswith(own + "."):
            commands = [p for p in full.split(".")[2:3] if not p.startswith("_")]
            if commands and not package:
                out.append(f"{where}: command module {module} imports another command, {full}")
            continue
        if launched:
            continue
        if name == "" and full != target:  # from latentbridge import files: a module, not a face name
            out.append(f"{where}: shell {shell} imports the module {full}; import names from the face instead")
            continue
        if not name:
            if full != "latentbridge":
                out.append(f"{where}: shell {shell} imports {full} as a module; import its public names instead")
            continue
        exported = all_names(full)
        if exported is None:
            out.append(f"{where}: shell {shell} imports {name} from {full}, which declares no __all__")
        elif name not in exported:
            out.append(f"{where}: shell {shell} imports {name} from {full}, which is not in its __all__")
    return out


def package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_package_keeps_its_layers():
    found = []
    for path in package_files():
        found += violations(module_name(path), path.read_text(), is_package(path))
    assert not found, "\n".join(found)


def test_the_walk_finds_every_package_module_and_a_shell():
    modules = {module_name(p) for p in package_files()}
    assert {"latentbridge", "latentbridge.codec", "latentbridge.checks.pairing", "latentbridge.cli.decode"} <= modules


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        ("latentbridge.codec", "from latentbridge.cli._common import fail_on_error", "the core imports shell module"),
        ("latentbridge.codec", "import latentbridge.cli", "the core imports shell module latentbridge.cli"),
        ("latentbridge.cli.decode", "from latentbridge.codec import _Job", "imports the private name _Job"),
        ("latentbridge.cli.decode", "from latentbridge.files._read import META_PREFIX", "a private module of"),
        ("latentbridge.cli.decode", "from latentbridge.codec import Fn, decode", "Fn from latentbridge.codec, which"),
        ("latentbridge.cli.decode", "from latentbridge.models.taesd import TAESD", "which declares no __all__"),
        ("latentbridge.cli.decode", "from latentbridge import codec", "imports the module latentbridge.codec"),
        ("latentbridge.cli.decode", "import latentbridge.codec", "as a module"),
        ("latentbridge.cli.encode", "from latentbridge.cli.decode import VAE_HELP", "imports another command"),
        ("latentbridge.cli.decode", "from latentbridge import nonsense", "not in its __all__"),
        ("latentbridge.weights.info", "from latentbridge.files._sniff import sniff", "a private module of"),
        ("latentbridge.report", "import importlib\nimportlib.import_module('latentbridge.checks')", "dynamically"),
        ("latentbridge.report", "def f(name):\n    return __import__(name)", "dynamically"),
        ("latentbridge.comfy.nodes", "from latentbridge.cli._common import vae_spec", "shell comfy imports shell"),
        ("latentbridge.cli.decode", "from latentbridge.web import create_app", "shell cli imports shell module"),
        ("latentbridge.cli.serve", "from latentbridge.web._app import create_app", "shell cli imports shell module"),
        ("latentbridge.cli.serve", "from latentbridge.web import Service", "shell cli imports shell module"),
        ("latentbridge.web.routes", "from latentbridge.cli._common import vae_spec", "shell web imports shell"),
    ],
)
def test_each_rule_catches_what_it_forbids(module, source, complaint):
    found = violations(module, source)
    assert any(complaint in line for line in found), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("latentbridge.cli.decode", "from latentbridge import Run, decode, __version__"),
        ("latentbridge.cli.decode", "from latentbridge.cli._common import fail_on_error"),
        ("latentbridge.cli.decode", "from latentbridge.files import sniff"),
        ("latentbridge.files._write", "from latentbridge.files import _containers as C"),
        ("latentbridge.images", "from latentbridge._atomic import atomic_write"),
        ("latentbridge.photos", "import importlib\nimportlib.import_module('skimage.data')"),
        ("latentbridge.cli", "from latentbridge.cli import decode as _decode"),
        ("latentbridge.cli.serve", "from latentbridge.web import WebConfig, create_app"),
        ("latentbridge.web._app", "from latentbridge.web._service import Service"),
    ],
)
def test_what_the_layers_allow_passes(module, source):
    assert violations(module, source, package=module == "latentbridge.cli") == []
