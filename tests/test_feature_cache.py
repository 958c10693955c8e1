"""The fast path (dyreg_edu.feature_cache): the frozen backbone's map once per video of a fixed set."""

import json

import pytest
import torch

from dyreg_edu import train

from test_train import tiny


@pytest.mark.slow
def test_a_cached_run_gives_the_losses_of_an_uncached_one(tmp_path, monkeypatch):
    """The fast path: the frozen backbone's map computed once per video (fp16 on disk). The first loss equals
    the uncached run's to fp16's precision; the weights then follow gradients of features rounded to fp16,
    so the next 49 drift apart only slowly (within 1% here)."""
    import dataclasses

    from dyreg_edu import feature_cache

    monkeypatch.setenv("DYREG_CACHE", str(tmp_path / "cache"))
    cfg = tiny("dyreg", freeze_backbone=True, train_videos=32, epochs=100)
    train.train(cfg, tmp_path / "plain", max_steps=50, progress=False)
    train.train(dataclasses.replace(cfg, feature_cache=True), tmp_path / "cached", max_steps=50, progress=False)
    plain, cached = [[json.loads(line)["loss"] for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
                     for name in ("plain", "cached")]
    assert len(plain) == len(cached) == 50
    assert cached[0] == pytest.approx(plain[0], rel=5e-4)
    assert cached == pytest.approx(plain, rel=1e-2)
    caches = sorted((tmp_path / "cache").glob("*.f16"))
    assert [path.name.split("_")[:2] for path in caches] == [["train", "32"], ["val", "4"]]
    assert feature_cache.clear() > 0 and not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match="feature_cache must be False unless the backbone is frozen"):
        tiny("dyreg", feature_cache=True)


def test_a_cache_interrupted_while_it_was_built_resumes(tmp_path, monkeypatch):
    from dyreg_edu import feature_cache

    monkeypatch.setenv("DYREG_CACHE", str(tmp_path))
    monkeypatch.setattr(feature_cache, "CHUNK", 4)
    cfg = tiny("fixed", freeze_backbone=True, train_videos=12)
    model, data = train.build_model(cfg), train.build_data(cfg, "train")
    whole = feature_cache.FeatureCache(model, data, cfg, progress=False)
    expected = whole.batch(range(12))
    meta = whole.path.with_suffix(".json")
    meta.write_text(json.dumps({"built": 4}))  # as if stopped after the first chunk
    again = feature_cache.FeatureCache(model, data, cfg, progress=False)
    assert json.loads(meta.read_text())["built"] == 12
    for key, value in again.batch(range(12)).items():
        assert torch.equal(value, expected[key]), key
    with torch.no_grad():
        reference = model.eval().features(train.as_input(data.batch(range(12))["video"]))
    torch.testing.assert_close(expected["features"], reference, rtol=2e-3, atol=2e-3)  # fp16 storage
