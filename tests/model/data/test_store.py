"""The packed latent store: same clips as the shards, frame-major and memory-mapped, atomic, staleness check."""

from pathlib import Path

import numpy as np
import pytest

from model.data.shards import shard_paths
from model.data.store import PackedClips, check_current, pack_store, read_description
from model.training.data import load_split
from tests.model.training.fixtures import write_fixture_shards


def test_store_holds_the_valid_frames_of_every_clip_in_shard_order(tmp_path):
    shards = write_fixture_shards(tmp_path, n_train=9, n_val=3, rows_per_shard=4)
    for split in ("train", "validation"):
        ref, packed = load_split(shards, split), PackedClips.open(tmp_path / "store", split)
        assert (
            len(packed) == len(ref) and packed.captions == ref.captions and packed.track_ids == ref.track_ids
        )
        assert packed.dim == ref.dim
        for i, latent in enumerate(ref.latents):
            assert packed.length(i) == latent.shape[1]
            np.testing.assert_array_equal(packed.window(i, 0, 10**6), latent.astype(np.float32))
            np.testing.assert_array_equal(packed.window(i, 3, 5), latent[:, 3:8].astype(np.float32))
    assert read_description(tmp_path / "store")["splits"]["train"]["frames"] == sum(
        c.shape[1] for c in load_split(shards, "train").latents
    )
    assert (
        PackedClips.open(tmp_path / "store", "train").head(2).track_ids
        == load_split(shards, "train").track_ids[:2]
    )
    # crops are positioned reads: the store is never memory-mapped, so its pages never count in this process's RSS
    assert "latents.npy" not in Path("/proc/self/maps").read_text()


def test_repacking_replaces_the_store_and_a_stale_store_is_refused(tmp_path):
    shards = write_fixture_shards(tmp_path, n_train=6, n_val=2)
    check_current(tmp_path / "store", shards)
    shard_paths(shards)[-1].unlink()
    with pytest.raises(ValueError, match="pipelines.pack"):
        check_current(tmp_path / "store", shards)
    pack_store(shards, tmp_path / "store")
    check_current(tmp_path / "store", shards)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left


def test_missing_store_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="pipelines.pack"):
        PackedClips.open(tmp_path / "nowhere", "train")
