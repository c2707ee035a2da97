"""The house rules that keep one place for each fact, checked on the code itself.

- No source file of components/, pipelines/, benchmarks/ or containers/ is over 500 lines.
- A data source's scheme (`folder:`, `tfds:`, ...) is spelled only by its kind under
  components/ingest/sources/: nothing else builds, matches or lists scheme strings.
- An export format's name is spelled only in its record (components/spec/export.py).
- Nothing outside pipelines/targets/ branches on a target's name: the CLI asks the target.

Docstrings are text for people and are not read; string constants and comparisons are.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from components.ingest.sources import KINDS
from components.spec.export import EXPORT_FORMATS

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = ("components", "pipelines", "benchmarks", "containers")
MAX_LINES = 500


def python_files(*roots: str) -> list[Path]:
    return sorted(p for root in roots for p in (ROOT / root).rglob("*.py"))


def relative(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def code_strings(path: Path) -> list[tuple[int, str, ast.AST]]:
    """(line, value, node) of every string constant in `path` that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = docstring_nodes(tree)
    return [
        (node.lineno, node.value, node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def test_no_source_file_over_500_lines():
    long = {
        relative(p): n
        for p in python_files(*SOURCE_ROOTS)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split by concern, each under {MAX_LINES} lines: {long}"


def scheme_spellings(path: Path, root: Path = ROOT) -> list[str]:
    """Where `path` spells a source scheme: a `scheme:` string, or a collection of schemes."""
    found = []
    for line, value, _ in code_strings(path):
        if any(value.startswith(f"{scheme}:") for scheme in KINDS):
            found.append(f"{relative(path, root)}:{line} {value[:40]!r}")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if sum(name in KINDS for name in names) >= 2:
                found.append(f"{relative(path, root)}:{node.lineno} {names}")
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in KINDS:
                    found.append(
                        f"{relative(path, root)}:{node.lineno} compares with {side.value!r}"
                    )
    return found


def test_source_schemes_are_spelled_by_their_kinds_only():
    kinds = ROOT / "components" / "ingest" / "sources"
    outside = [p for p in python_files("components", "pipelines") if kinds not in p.parents]
    found = [hit for path in outside for hit in scheme_spellings(path)]
    assert not found, "ask components.ingest.sources.KINDS instead:\n" + "\n".join(found)


def test_the_scheme_check_finds_a_chain_on_schemes(tmp_path):
    chain = tmp_path / "chain.py"
    chain.write_text(
        'def local(source):\n    scheme = source.split(":")[0]\n'
        '    return scheme in ("folder", "csv") or scheme == "npz" or source.startswith("tfds:")\n'
    )
    assert len(scheme_spellings(chain, tmp_path)) == 3


def test_export_format_names_are_spelled_in_their_records_only():
    table = ROOT / "components" / "spec" / "export.py"
    found = [
        f"{relative(path)}:{line} {value!r}"
        for path in python_files("components", "pipelines")
        if path != table
        for line, value, _ in code_strings(path)
        if value in EXPORT_FORMATS and not is_folder_name(path, value)
    ]
    assert not found, "read components.spec.export.EXPORT_FORMATS instead:\n" + "\n".join(found)


def is_folder_name(path: Path, value: str) -> bool:
    """The Keras model folder's SavedModel subfolder shares its name with the format."""
    return relative(path) == "components/models/keras.py" and value == "saved_model"


def target_name_branches(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Compare, ast.Match)):
            parts = (
                [node.left, *node.comparators] if isinstance(node, ast.Compare) else [node.subject]
            )
            for part in parts:
                if isinstance(part, ast.Attribute) and part.attr == "name":
                    owner = part.value
                    spelled = (
                        owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                    )
                    if "target" in spelled:
                        found.append(f"{relative(path, root)}:{node.lineno}")
    return found


def test_nothing_outside_the_targets_branches_on_a_target_name():
    targets = ROOT / "pipelines" / "targets"
    outside = [p for p in python_files("components", "pipelines") if targets not in p.parents]
    found = [hit for path in outside for hit in target_name_branches(path)]
    assert not found, "give the Target a method or attribute instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    ['if target.name == "kfp":\n    pass\n', 'x = self.target.name in ("local", "vertex")\n'],
)
def test_the_target_check_finds_a_branch(tmp_path, code):
    module = tmp_path / "branch.py"
    module.write_text(code)
    assert target_name_branches(module, tmp_path)
