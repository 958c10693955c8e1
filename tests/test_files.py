"""A file that is not the expected checkpoint gives one ValueError naming it (dyreg_edu.files).

Each loader gets the four bad files of ``conftest.write_bad_torch_files`` (a text file, random
bytes, a half-written checkpoint, a checkpoint of another kind) and must raise exactly one
``ValueError`` (no chained torch/pickle error) whose message names the file and what was
expected; the CLI exits with code 2 and one line on stderr. A missing file stays ``FileNotFoundError``.
"""

import pytest
import torch

from dyreg_edu import evaluate_tsm
from dyreg_edu.dyreg import DyRegBlock
from dyreg_edu.files import check_keys, load_torch_file
from dyreg_edu.models import tsm_resnet
from dyreg_edu.notebook import bundled_fixture
from dyreg_edu.official import EXPECTED_CHECKPOINT, tsm_from_official, tsm_to_official
from dyreg_edu.official_block import EXPECTED_BLOCK

BAD = ("text", "random_bytes", "truncated", "other_kind")
EXPECTED = "a dyreg_edu training checkpoint (a dict with 'model' and 'config')"
FOUND = {"text": "a text file", "random_bytes": "not a torch file", "truncated": "truncated",
         "other_kind": "a dict with keys ['epoch', 'arch', 'weights']"}


def one_clear_error(call, path, expected):
    """``call()`` raises one ValueError (nothing chained) naming ``path`` and ``expected``; its message."""
    with pytest.raises(ValueError) as caught:
        call()
    error = caught.value
    assert type(error) is ValueError
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    message = str(error)
    assert str(path) in message and expected in message and "\n" not in message
    return message


LOADERS = {
    "load_torch_file": (lambda p: load_torch_file(p, expected=EXPECTED, keys=("model", "config")), EXPECTED),
    "tsm_from_official": (tsm_from_official, EXPECTED_CHECKPOINT),
    "DyRegBlock.from_official": (DyRegBlock.from_official, EXPECTED_BLOCK),
}


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("loader", LOADERS)
def test_a_bad_file_gives_one_value_error(bad_torch_files, loader, kind):
    load, expected = LOADERS[loader]
    path = bad_torch_files[kind]
    message = one_clear_error(lambda: load(path), path, expected)
    assert FOUND[kind] in message


@pytest.mark.parametrize("loader", LOADERS)
def test_a_missing_file_stays_file_not_found(tmp_path, loader):
    load, _ = LOADERS[loader]
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load(tmp_path / "absent.pt")


@pytest.mark.parametrize("kind", BAD)
def test_evaluate_tsm_exits_with_one_line(bad_torch_files, tmp_path, capsys, kind):
    path = bad_torch_files[kind]
    with pytest.raises(SystemExit) as caught:
        evaluate_tsm.main(["--checkpoint", str(path), "--frames", str(tmp_path)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("evaluate_tsm: error: --checkpoint ")
    assert str(path) in err and EXPECTED_CHECKPOINT in err and "Traceback" not in err


def test_load_torch_file_returns_the_dict_and_checks_keys(tmp_path):
    path = tmp_path / "run.pt"
    torch.save({"model": {"w": torch.ones(2)}, "config": {"lr": 0.1}}, path)
    loaded = load_torch_file(path, expected=EXPECTED, keys=("model", "config"))
    assert loaded["config"] == {"lr": 0.1} and torch.equal(loaded["model"]["w"], torch.ones(2))
    message = one_clear_error(lambda: load_torch_file(path, expected=EXPECTED, keys=("model", "optimizer")),
                              path, EXPECTED)
    assert "without ['optimizer']" in message
    torch.save([1, 2, 3], path)
    assert "found a list" in one_clear_error(lambda: load_torch_file(path, expected=EXPECTED), path, EXPECTED)
    with pytest.raises(ValueError, match="found a folder"):
        load_torch_file(tmp_path, expected=EXPECTED)


def test_a_file_with_python_objects_names_weights_only(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"model": {}, "config": {"when": __import__("datetime").date(2021, 12, 6)}}, path)
    assert "weights_only=False" in one_clear_error(lambda: load_torch_file(path, expected=EXPECTED), path, EXPECTED)
    assert load_torch_file(path, expected=EXPECTED, weights_only=False)["config"]["when"].year == 2021


def test_check_keys_of_a_loaded_dict():
    assert check_keys({"model": 1, "config": 2}, ("model",), source="the run", expected=EXPECTED) == {"model": 1,
                                                                                                        "config": 2}
    with pytest.raises(ValueError, match=r"the run: expected .*'config'\); found a dict with keys \['model'\], "
                                         r"without \['config'\]"):
        check_keys({"model": 1}, ("model", "config"), source="the run", expected=EXPECTED)
    with pytest.raises(ValueError, match="found a str"):
        check_keys("model", source="the run", expected=EXPECTED)


def test_block_from_a_fixture_file_and_from_a_state_dict_file(tmp_path):
    fixture = torch.load(bundled_fixture(), weights_only=True)
    by_path = DyRegBlock.from_official(bundled_fixture()).eval()  # the fixture's own config
    state_file = tmp_path / "block.pt"
    torch.save(fixture["state_dict"], state_file)
    by_state_file = DyRegBlock.from_official(str(state_file), fixture["config"]).eval()
    with torch.no_grad():
        for block in (by_path, by_state_file):
            assert (block(fixture["input"])[0] - fixture["output"]).abs().max() < 1e-4
    with pytest.raises(ValueError, match="block.pt holds no config: pass config="):
        DyRegBlock.from_official(state_file)


def test_a_whole_model_given_for_one_block_is_named(tmp_path):
    """The authors' SSv2 checkpoint (or its state dict) where one block's state dict is expected."""
    state = tsm_to_official(tsm_resnet(graph_stages=("res4", "res5"), num_frames=2))
    checkpoint, state_file = tmp_path / "dyreg_gnn_model.pth.tar", tmp_path / "model_state.pt"
    torch.save({"epoch": 3, "arch": "resnet50", "state_dict": state, "optimizer": {}, "best_prec1": 0.0}, checkpoint)
    torch.save(state, state_file)
    message = one_clear_error(lambda: DyRegBlock.from_official(checkpoint), checkpoint, EXPECTED_BLOCK)
    assert "tsm_from_official" in message
    message = one_clear_error(lambda: DyRegBlock.from_official(state_file), state_file, EXPECTED_BLOCK)
    assert "2 DyReg blocks" in message
    # and the other way round: one block's golden fixture given to tsm_from_official
    message = one_clear_error(lambda: tsm_from_official(bundled_fixture()), bundled_fixture(), EXPECTED_CHECKPOINT)
    assert "without 'new_fc.weight'" in message
