"""Rules about the source itself: servers find codecs, compressors and protectors in their registries, and every
package imports only packages below it in the layer order README.md draws."""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

import pytest

from pmc2.runtime.compressors import COMPRESSORS
from pmc2.runtime.link_codecs import LINK_CODECS
from pmc2.runtime.paths import REPO_ROOT
from pmc2.runtime.protection import PROTECTORS

SERVER_SOURCES = ("edge_server", "cloud_server", "serving")
# Lowest first; packages in one layer import neither each other nor anything above.
LAYERS = (("pmc2",), ("runtime",), ("serving",), ("edge_server", "cloud_server"), ("mobile_client",), ("training",),
          ("export",), ("evaluation", "bench", "demo"), ("fit",))
LAYER_OF = {package: level for level, layer in enumerate(LAYERS) for package in layer}


def _sources(folder: str) -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in sorted((REPO_ROOT / folder).rglob("*.py"))]


def _names(tree: ast.Module):
    """(line, text) of every string constant and every name the module defines, imports or uses."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.lineno, node.name
        elif isinstance(node, ast.arg):
            yield node.lineno, node.arg
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or ""
            yield from ((node.lineno, alias.asname or alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, alias.asname or alias.name) for alias in node.names)


@pytest.mark.parametrize("folder", SERVER_SOURCES)
def test_servers_never_name_a_codec_or_a_compressor(folder: str) -> None:
    """Codecs and compressors are looked up in their registries: no string in a server's source is one's name."""
    named = {}
    for path, tree in _sources(folder):
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in {*LINK_CODECS, *COMPRESSORS}:
                named.setdefault(path.name, []).append(f"line {node.lineno}: {node.value!r}")
    assert not named, named


@pytest.mark.parametrize("folder", SERVER_SOURCES)
def test_servers_never_name_a_protector(folder: str) -> None:
    """Protectors are looked up in the registry: no string, docstring or identifier in a server's source has a
    word that starts with a protector's name ("facemix", "FaceMixEdge", "/v1/facemix", "FACEMIX_CHUNK")."""
    named = {}
    for path, tree in _sources(folder):
        for line, text in _names(tree):
            words = re.findall(r"[a-z0-9]+", text.lower())
            hits = [protector for protector in PROTECTORS for word in words if word.startswith(protector)]
            if hits:
                named.setdefault(path.name, []).append(f"line {line}: {text[:60]!r} names {', '.join(hits)}")
    assert not named, named


def _packages() -> dict[str, str]:
    """Folder of every installed package (setup.cfg's package_dir), by its short name ("pmc2" for the namespace)."""
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    mapping = dict(line.split(" = ") for line in config["options"]["package_dir"].strip().splitlines())
    return {name.removeprefix("pmc2."): folder for name, folder in mapping.items()}


def _imported_packages(tree: ast.Module, packages: dict[str, str]):
    """(line, package) of every pmc2 import, wherever it is (module level or inside a function)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] if node.module != "pmc2" else [f"pmc2.{alias.name}" for alias in node.names]
        else:
            continue  # relative imports stay inside their package
        for module in modules:
            parts = module.split(".")
            if parts[0] == "pmc2":
                yield node.lineno, parts[1] if len(parts) > 1 and parts[1] in packages else "pmc2"


def test_every_package_has_a_layer() -> None:
    assert set(_packages()) == set(LAYER_OF)


def test_readme_draws_the_layer_order() -> None:
    assert " → ".join(" | ".join(layer) for layer in LAYERS) in (REPO_ROOT / "README.md").read_text()


@pytest.mark.parametrize("package", list(LAYER_OF))
def test_packages_import_only_packages_below_them(package: str) -> None:
    packages = _packages()
    folder = REPO_ROOT / packages[package]
    files = sorted(folder.glob("*.py")) if package == "pmc2" else sorted(folder.rglob("*.py"))
    wrong = [f"{path.relative_to(REPO_ROOT)}:{line} imports pmc2.{imported}"
             for path in files for line, imported in _imported_packages(ast.parse(path.read_text()), packages)
             if imported != package and LAYER_OF[imported] >= LAYER_OF[package]]
    assert not wrong, wrong
