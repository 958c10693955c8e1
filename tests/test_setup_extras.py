"""A chapter's Colab setup installs the package extras it needs (tools/notebooks.py SETUP_EXTRAS): chapter 9
installs ``video`` (PyAV); every other chapter's setup cell is the plain one."""

import tomllib
from pathlib import Path

from tools import notebooks as nbtool

REPO = Path(__file__).resolve().parents[1]


def test_chapter_9_installs_the_video_extra_and_the_others_the_package():
    plain = nbtool.setup_source(REPO)
    assert '"-e", CLONE]' in plain
    for path in sorted((REPO / "book").glob("*.ipynb")):
        source = nbtool.setup_source(REPO, path)
        if path.stem == "09_something_something":
            assert source == plain.replace('"-e", CLONE]', '"-e", CLONE + "[video]"]')
        else:
            assert source == plain, path


def test_every_setup_extra_is_an_extra_of_the_package():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["video"] == ["av>=12"]
    for chapter, names in nbtool.SETUP_EXTRAS.items():
        assert (REPO / "book" / f"{chapter}.ipynb").exists(), chapter
        assert set(names) <= set(extras), chapter
