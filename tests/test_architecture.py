"""The parts of ../shared/DESIGN.md and the imports that must never exist between them, read from the source (AST):
a new import that crosses a forbidden arrow fails here, with the file and the line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "symrl"

PARTS = {  # part -> module prefixes (dotted, below symrl)
    "Core": ("losses", "advantages"),
    "Base": ("errors", "device", "optimizers", "noise", "threads", "_lazy", "yamlfile"),
    "Config": ("config", "presets"),
    "Envs": ("envs",),
    "Engine": ("algos", "rollout", "trainer", "policies", "agent", "evaluation"),
    "Fast": ("fast",),
    "Runs": ("runs",),
    "Experiments": ("sweeps", "results", "stats", "report", "demo", "anchors", "atari_scores"),
    "RLHF": ("rlhf",),
    "Integrations": ("integrations",),
    "Face": ("cli", "__init__"),
}
NEVER = {  # part -> parts it never imports: DESIGN.md's table; and nothing imports Face
    "Core": set(PARTS) - {"Core"},
    "Base": {"Config"},
    "Config": {"Envs"},
    "Envs": {"Config", "Engine"},
    "Engine": {"Experiments"},
    "Fast": set(),
    "Runs": {"Config"},
    "Experiments": set(),
    "RLHF": {"Engine", "Envs"},
    "Integrations": {"Engine", "Config"},
    "Face": set(),
}
NEVER = {part: parts | {"Face"} for part, parts in NEVER.items()}
# Arrows DESIGN forbids that the code still has, each with its reason; the test fails when one disappears (so the
# list shrinks) or a new one appears.
KNOWN = {
    ("config.py", "envs.registry"): "the preset family and whether a preset's bins apply are read from the env "
                                    "registry's env_family and has_box_actions (the one place each is decided); "
                                    "the bins check builds the env once",
}


def _part(module: str) -> str:
    first = module.split(".")[0]
    for part, prefixes in PARTS.items():
        if first in prefixes:
            return part
    raise AssertionError(f"symrl.{module} belongs to no part of DESIGN.md; add it to PARTS")


def _imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """The symrl modules a file imports (at any depth: lazy imports count too), as dotted names below symrl."""
    here = path.relative_to(package).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[:-1])  # the module's package
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
            if node.module is None:  # from . import runs
                found += [(node.lineno, ".".join([*base, alias.name])) for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("symrl."):
            found.append((node.lineno, node.module.removeprefix("symrl.")))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.removeprefix("symrl.")) for a in node.names if a.name.startswith("symrl.")]
    return found


def _crossings() -> dict[tuple[str, str], str]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.relative_to(PACKAGE)
        module = ".".join(source.with_suffix("").parts)
        if module == "__init__":
            continue  # the package's own exports (Face)
        part = _part(module)
        for line, target in _imports(path):
            if target and _part(target) in NEVER[part]:
                out[(str(source), target)] = f"symrl/{source}:{line} ({part}) imports symrl.{target} ({_part(target)})"
    return out


def test_no_forbidden_import_between_parts():
    crossings = _crossings()
    new = [text for key, text in crossings.items() if key not in KNOWN]
    assert not new, "imports DESIGN.md forbids:\n" + "\n".join(new)
    gone = [key for key in KNOWN if key not in crossings]
    assert not gone, f"these known crossings are gone; remove them from KNOWN: {gone}"


@pytest.mark.parametrize("source,imports", [("envs/make.py", "config"), ("threads.py", "config")])
def test_the_check_sees_an_import(tmp_path, source, imports):
    """The reader is not vacuous: an added import of the forbidden kind is found."""
    path = PACKAGE / source
    lines = _imports(path)
    probe = tmp_path / "symrl" / source
    probe.parent.mkdir(parents=True)
    probe.write_text(path.read_text() + f"\nfrom {'..' if '/' in source else '.'}{imports} import Config\n")
    relative = [t for _, t in _imports(probe, tmp_path / "symrl")]
    assert imports in relative and imports not in [t for _, t in lines]

