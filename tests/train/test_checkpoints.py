"""The run folder: old epochs' checkpoint folders do not pile up for the life of a run."""

from pipeline.config import load_config
from pipeline.train import checkpoints


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    for epoch in range(1, 6):
        (tmp_path / f"ckpt-{epoch}").mkdir()
        (tmp_path / f"ckpt-{epoch}" / "ckpt.index").write_text("x")
    (tmp_path / "ckpt-notes").mkdir()  # not a checkpoint folder: left alone
    (tmp_path / "state.json").write_text("{}")
    assert sorted(checkpoints.prune_checkpoints(str(tmp_path), newest=5, keep=2)) == ["ckpt-1", "ckpt-2", "ckpt-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-4", "ckpt-5", "ckpt-notes", "state.json"]
    assert checkpoints.prune_checkpoints(str(tmp_path), newest=5, keep=2) == []


def test_the_number_kept_is_a_config_key():
    assert load_config().train.keep_checkpoints == 2
    assert load_config(overrides=["train.keep_checkpoints=5"]).train.keep_checkpoints == 5
