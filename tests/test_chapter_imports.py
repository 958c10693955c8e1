"""Every chapter's imports work after only ``pip install .`` (with the extras its Colab setup installs) and torch:
a fresh virtual environment, the package installed from a copy of the repository, then every import statement
of every code cell of ``book/*.ipynb`` run there, with the repository first on ``sys.path`` as the Colab setup
cell puts it (chapters may import ``benchmarks``). A dependency missing from ``pyproject.toml`` (as ``av`` was)
fails here.

torch is not installed again (gigabytes): the new environment sees, through a ``.pth`` file, a folder that holds
only torch and torchvision and what they require (their declared requirements, followed to the end), linked from
this interpreter's site-packages; nothing else of it. Everything the chapters need beyond that comes from
``pip install .``, from the package index that pip is configured with.
"""

import ast
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FILES = ("pyproject.toml", "README.md", "dyreg_edu", "data_gen")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(names) -> set[str]:
    """The installed distributions ``names`` need to run: their requirements (no extras), followed to the end."""
    seen, todo = set(), [normal(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                try:
                    metadata.distribution(requirement.name)
                except metadata.PackageNotFoundError:
                    continue  # an optional one this interpreter lacks
                todo.append(normal(requirement.name))
    return seen


def link_distributions(names, folder: Path) -> None:
    """``folder`` with links to the top-level files and folders (code and ``.dist-info``) of the distributions."""
    folder.mkdir()
    for name in names:
        dist = metadata.distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            source = Path(dist.locate_file(top))
            if top not in ("..", "__pycache__") and source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)


def chapter_imports() -> list[str]:
    """Every import statement (absolute) of the chapters' code cells, as source, in order, without repeats;
    not those under ``if "google.colab" in sys.modules:`` (Colab's own package, absent everywhere else)."""
    statements = []
    for path in sorted((REPO / "book").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            lines = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
            tree = ast.parse(lines)
            for node in list(ast.walk(tree)):
                if isinstance(node, ast.If) and "google.colab" in ast.unparse(node.test):
                    node.body = [ast.Pass()]  # what runs only inside Colab (mounting Drive) is not importable elsewhere
            for node in ast.walk(tree):
                if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0):
                    statement = ast.unparse(node)
                    if statement not in statements:
                        statements.append(statement)
    return statements


def library_imports() -> list[str]:
    """The third-party modules that ``dyreg_edu`` and ``data_gen`` import anywhere, inside functions too
    (``av`` is imported only when a video is decoded), as ``import X`` statements."""
    found = set()
    for path in sorted([*(REPO / "dyreg_edu").rglob("*.py"), *(REPO / "data_gen").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    return [f"import {m}" for m in sorted(found - set(sys.stdlib_module_names) - {"dyreg_edu", "data_gen"})]


def setup_extras() -> list[str]:
    sys.path.insert(0, str(REPO))
    try:
        from tools.notebooks import SETUP_EXTRAS
    finally:
        sys.path.remove(str(REPO))
    return sorted({extra for extras in SETUP_EXTRAS.values() for extra in extras})


def test_chapter_imports_are_found_in_the_notebooks():
    statements = chapter_imports()
    assert "import torch" in statements and any(s.startswith("from dyreg_edu") for s in statements)
    assert any("data_gen.ssv2" in s for s in statements)  # chapter 9, which needs the video extra
    assert "import av" in library_imports() and "import torch" in library_imports()


@pytest.mark.slow
def test_every_chapters_imports_work_after_pip_install(tmp_path):
    source = tmp_path / "package"
    source.mkdir()
    for name in PACKAGE_FILES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    link_distributions(requirement_closure(["torch", "torchvision"]), tmp_path / "torch_only")
    (site / "torch_only.pth").write_text(str(tmp_path / "torch_only") + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    extras = setup_extras()
    target = f"{source}[{','.join(extras)}]" if extras else str(source)
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", target], env=env, cwd=tmp_path,
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    script = tmp_path / "imports.py"
    script.write_text("import sys\nsys.path.insert(0, %r)  # as the Colab setup cell does\n" % str(REPO)
                      + "import matplotlib\nmatplotlib.use('Agg')\n"
                      + "".join(f"{s}\n" for s in chapter_imports() + library_imports()) + "print('all imported')\n")

    def run():
        return subprocess.run([str(python), str(script)], env={**env, "MPLBACKEND": "Agg"}, cwd=tmp_path,
                              capture_output=True, text=True)

    out = run()
    assert out.returncode == 0 and "all imported" in out.stdout, out.stderr[-3000:]
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "av"], env=env, check=True)
    out = run()  # the check can fail: without the video extra, chapter 9's decoder is missing
    assert out.returncode != 0 and "No module named 'av'" in out.stderr
    leaked = subprocess.run([str(python), "-c", "import pytest"], env=env, cwd=tmp_path, capture_output=True)
    assert leaked.returncode != 0  # the environment does not see this interpreter's other packages
