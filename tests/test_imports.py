"""The layers of the code, read from its import statements (an AST walk, nothing imported):
no import cycle, ``data_gen`` knows no model, the library never imports ``tools/``, the book or the
benchmarks, and the method never imports the research (``dyreg_edu.experiments``)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dyreg_edu", "data_gen", "tools")
#: The method: the modules that implement the paper's equations and models.
METHOD = ("kernels", "regions", "graph", "variants", "baselines", "layers", "dyreg", "models", "official_block", "files")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module of the repository that ``path`` imports, at its top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # ``from . import train``
    return {m for m in found if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    names = {module_name(p): p for p in files}
    return {name: {m for m in imports_of(path) if m in names and m != name} for name, path in names.items()}


def test_there_is_no_import_cycle():
    edges = graph()
    state: dict[str, str] = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(trail + [node, nxt])
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])


def test_the_layers():
    edges = graph()
    for name, imported in edges.items():
        if name.startswith("data_gen"):
            assert not any(m.startswith("dyreg_edu") for m in imported), (name, imported)
        if name.startswith("dyreg_edu"):
            assert not any(m.startswith("tools") for m in imported), (name, imported)
        if name.split(".")[-1] in METHOD and name.startswith("dyreg_edu"):
            assert not any(m.startswith("dyreg_edu.experiments") or m.split(".")[-1] in
                           ("train", "train_ssv2", "ablations", "mini", "notebook", "plots") for m in imported), name


def test_the_walk_sees_a_cycle(tmp_path, monkeypatch):
    """The test above can fail: two modules that import each other are found."""
    (tmp_path / "dyreg_edu").mkdir()
    (tmp_path / "dyreg_edu" / "__init__.py").write_text("")
    (tmp_path / "dyreg_edu" / "a.py").write_text("from . import b\n")
    (tmp_path / "dyreg_edu" / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    try:
        test_there_is_no_import_cycle()
    except AssertionError as error:
        assert "dyreg_edu.a -> dyreg_edu.b -> dyreg_edu.a" in str(error)
    else:
        raise AssertionError("the cycle a -> b -> a was not found")


def test_the_trainer_reads_top_to_bottom_in_at_most_450_lines():
    """Issue 33: the config, the presets, the loop, evaluation and the CLI; run plumbing lives in runs.py."""
    assert len((REPO / "dyreg_edu" / "train.py").read_text().splitlines()) <= 450
