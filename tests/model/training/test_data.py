import numpy as np
import pyarrow as pa
import pytest
import torch

from model.data.shards import ShardMetadata, latent_array, shard_schema
from model.data.stats import Standardiser
from model.runtime.atomic_io import write_parquet_atomic
from model.training.data import (
    ClipSampler,
    TrainBatches,
    collate,
    crop_start,
    load_split,
    validation_batches,
)
from model.training.text_bank import TextBank
from tests.model.training.fixtures import HashTextEncoder, write_fixture_shards


@pytest.fixture
def data(tmp_path):
    shards = write_fixture_shards(tmp_path, n_train=12, n_val=4, dim=4, width=24)
    train, val = load_split(shards, "train"), load_split(shards, "validation")
    std = Standardiser.from_json(tmp_path / "stats.json")
    texts = TextBank.build(HashTextEncoder(), list(train.captions) + list(val.captions))
    return train, val, std, texts


def test_load_split_keeps_valid_frames_of_each_split(data):
    train, val, _, _ = data
    assert len(train) == 12 and len(val) == 4 and train.dim == 4 and train.frame_rate == 10.0
    assert all(12 <= c.shape[1] <= 24 and c.dtype == np.float16 for c in train.latents)
    assert not set(train.track_ids) & set(val.track_ids)


def test_non_finite_latents_are_refused_naming_the_shard(tmp_path):
    meta = ShardMetadata(codec="fixture", settings={}, latent_shape=(2, 4), frame_rate=10.0)
    latent = np.ones((1, 2, 4), dtype=np.float16)
    latent[0, 1, 2] = np.nan
    cols = {
        "track_id": ["track_bad"],
        "clip_index": pa.array([0], pa.int32()),
        "start_s": [0.0],
        "n_frames": pa.array([4], pa.int32()),
        "latent": latent_array(latent),
        "caption": ["x"],
        "genre": [[]],
        "instrument": [[]],
        "mood": [[]],
        "split": ["train"],
    }
    schema = shard_schema(meta)
    table = pa.Table.from_arrays(
        [
            pa.array(cols[f.name], f.type) if not isinstance(cols[f.name], pa.Array) else cols[f.name]
            for f in schema
        ],
        schema=schema,
    )
    write_parquet_atomic(tmp_path / "shard-00000.parquet", table)
    with pytest.raises(ValueError, match=r"shard-00000\.parquet: track track_bad .*NaN"):
        load_split(tmp_path, "train")


def test_standardiser_round_trip_and_unit_scale(data, tmp_path):
    train, _, std, _ = data
    z = torch.from_numpy(np.concatenate(train.latents, axis=1).astype(np.float32))
    s = std.standardise(z)
    assert s.mean(dim=1).abs().max() < 1e-2 and (s.std(dim=1) - 1).abs().max() < 1e-2
    torch.testing.assert_close(std.destandardise(std.standardise(z[None])), z[None], atol=1e-5, rtol=1e-5)
    (tmp_path / "bad.json").write_text('{"count": 1, "mean": [0.0, 1.0], "var": [1.0, -1.0]}')
    with pytest.raises(ValueError, match="bad.json"):
        Standardiser.from_json(tmp_path / "bad.json")


def test_sampler_epochs_are_permutations_and_ranks_disjoint():
    s = ClipSampler(10, seed=3)
    first, second = [i for i, _ in s.take(10)], [i for i, _ in s.take(10)]
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10)) and first != second
    r0, r1 = ClipSampler(11, 3, rank=0, world_size=2), ClipSampler(11, 3, rank=1, world_size=2)
    a, b = [i for i, _ in r0.take(5)], [i for i, _ in r1.take(5)]
    assert len(set(a) | set(b)) == 10 and r0.state_dict()["epoch"] == 1


def test_sampler_resumes_mid_epoch_to_the_same_sequence():
    s = ClipSampler(7, seed=1)
    s.take(10)  # into the second epoch
    state = s.state_dict()
    expected = s.take(12)
    resumed = ClipSampler(7, seed=1)
    resumed.load_state_dict(state)
    assert resumed.take(12) == expected
    with pytest.raises(ValueError, match="seed"):
        ClipSampler(7, seed=2).load_state_dict(state)


def test_crops_pad_short_clips_and_follow_the_source(data):
    train, _, std, texts = data
    frames = 20
    short = next(i for i, c in enumerate(train.latents) if c.shape[1] < frames)
    long = next(i for i, c in enumerate(train.latents) if c.shape[1] > frames)
    batch = collate(train, [(short, 0), (long, 0)], frames, 5, std, texts)
    n_short = train.latents[short].shape[1]
    assert batch.mask[0].sum() == n_short and not batch.mask[0, n_short:].any() and batch.mask[1].all()
    assert (batch.x[0, :, n_short:] == 0).all()
    start = crop_start(train.latents[long].shape[1], frames, np.random.default_rng([5, 0, long]))
    src = torch.from_numpy(train.latents[long][:, start : start + frames].astype(np.float32))
    torch.testing.assert_close(batch.x[1], std.standardise(src))
    again = collate(train, [(short, 0), (long, 0)], frames, 5, std, texts)
    torch.testing.assert_close(batch.x, again.x)
    assert batch.text.shape[0] == 2 and batch.text_mask[:, 0].all()


def test_train_batches_resume_gives_identical_batches(data):
    train, _, std, texts = data
    a = TrainBatches(train, texts, std, batch_size=5, frames=16, seed=2)
    for _ in range(3):
        a.next()
    state = a.state_dict()
    expected = [a.next() for _ in range(4)]
    b = TrainBatches(train, texts, std, batch_size=5, frames=16, seed=2)
    b.load_state_dict(state)
    for want in expected:
        got = b.next()
        assert got.clip_indices == want.clip_indices
        torch.testing.assert_close(got.x, want.x)
        torch.testing.assert_close(got.text, want.text)


def test_validation_batches_are_deterministic_and_complete(data):
    _, val, std, texts = data
    one = list(validation_batches(val, texts, std, batch_size=3, frames=16))
    two = list(validation_batches(val, texts, std, batch_size=3, frames=16))
    assert [i for b in one for i in b.clip_indices] == list(range(len(val)))
    for a, b in zip(one, two, strict=True):
        torch.testing.assert_close(a.x, b.x)


def test_text_bank_null_condition_and_padding(data):
    _, _, _, texts = data
    null, null_mask = texts.null_condition()
    assert null.shape == (1, 1, 8) and null_mask.all()  # [CLS] only
    emb, mask = texts.batch(["calm piano", "fast rock drums"])
    assert emb.shape == (2, 4, 8) and mask.sum(dim=1).tolist() == [3, 4]
    assert (emb[0, 3] == 0).all()


def test_prefetched_batches_equal_synchronous_ones_and_resume_exactly(tmp_path):
    write_fixture_shards(tmp_path, n_train=12, n_val=2)
    from model.data.store import PackedClips

    clips = PackedClips.open(tmp_path / "store", "train")
    std = Standardiser.from_json(tmp_path / "stats.json")
    texts = TextBank.build(HashTextEncoder(), list(clips.captions))
    sync = TrainBatches(clips, texts, std, 5, 16, seed=3)
    ahead = TrainBatches(clips, texts, std, 5, 16, seed=3, prefetch=2)
    reference = [sync.next() for _ in range(7)]
    got = [ahead.next() for _ in range(4)]
    state = ahead.state_dict()  # after 4 batches handed out, although more are in flight
    assert state == TrainBatches(clips, texts, std, 5, 16, seed=3).sampler.state_dict() | {
        "epoch": (4 * 5) // 12,
        "position": (4 * 5) % 12,
    }
    resumed = TrainBatches(clips, texts, std, 5, 16, seed=3, prefetch=3)
    resumed.load_state_dict(state)
    got += [resumed.next() for _ in range(3)]
    for a, b in zip(reference, got, strict=True):
        assert a.clip_indices == b.clip_indices
        assert torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask) and torch.equal(a.text, b.text)
    assert ahead.served == 4 and ahead.wait_s >= 0 and ahead.load_s > 0
    ahead.close()
    resumed.close()


class CountingEncoder(HashTextEncoder):
    calls = 0

    def encode(self, texts):
        CountingEncoder.calls += 1
        return super().encode(texts)


def test_text_embeddings_are_cached_on_disk_once_per_settings(tmp_path):
    captions = ["calm piano", "fast rock drums", "calm piano"]
    first = TextBank.cached(CountingEncoder(), captions, tmp_path, {"max_length": 8})
    calls = CountingEncoder.calls
    again = TextBank.cached(CountingEncoder(), list(reversed(captions)), tmp_path, {"max_length": 8})
    assert CountingEncoder.calls == calls  # read from the cache, not encoded again
    assert isinstance(again.tokens, np.memmap) and again.tokens.dtype == np.float16
    for c in captions:
        assert torch.equal(first.embedding(c), again.embedding(c))
        exact = HashTextEncoder().encode([c])[0][0, : len(c.split()) + 1]
        torch.testing.assert_close(again.embedding(c), exact, atol=2e-3, rtol=1e-3)  # float16 storage
    TextBank.cached(CountingEncoder(), captions, tmp_path, {"max_length": 16})
    assert CountingEncoder.calls > calls and len(list(tmp_path.glob("text-*"))) == 2
