"""The built-in prompt set's reproducible 80/20 ranked / out-of-distribution split by training coverage."""

import polars as pl

from evaluation.challenge.ood_split import n_ood, novelty, split_by_training_coverage, tag_set
from evaluation.challenge.prompts import Prompt, builtin_prompts, load_prompts, save_prompts
from model.datasets.synthetic import track_spec


def _prompt(pid, genre, instruments, mood):
    return Prompt(
        pid, f"{genre} {mood}", {"genre": (genre,), "instrument": tuple(instruments), "mood": (mood,)}
    )


def test_fraction_rounds_half_up():
    assert [n_ood(n) for n in (0, 1, 2, 3, 5, 10, 100, 101)] == [0, 0, 0, 1, 1, 2, 20, 20]


def test_unseen_tags_come_first_then_unseen_pairs_then_rare_pairs():
    train = [
        {"genre": ["rock"], "instrument": ["guitar"], "mood": ["happy"]},
        {"genre": ["rock"], "instrument": ["guitar"], "mood": ["happy"]},
        {"genre": ["jazz"], "instrument": ["piano"], "mood": ["sad"]},
        {"genre": ["rock"], "instrument": ["piano"], "mood": ["sad"]},
    ]
    prompts = [
        _prompt("common", "rock", ["guitar"], "happy"),  # every pair seen twice
        _prompt("rare", "jazz", ["piano"], "sad"),  # every pair seen, one of them once
        _prompt("new-pair", "jazz", ["guitar"], "happy"),  # 2 of 3 pairs never seen together
        _prompt("new-tag", "polka", ["guitar"], "happy"),  # a tag training never had
        _prompt("plain", "rock", ["piano"], "sad"),
    ]
    counts = [tag_set(c) for c in train]
    assert novelty(tag_set(prompts[3].concepts), *_counts(counts))[0] == 1
    order = sorted(prompts, key=lambda p: _key(p, counts), reverse=True)
    assert [p.prompt_id for p in order[:3]] == ["new-tag", "new-pair", "rare"]
    split = split_by_training_coverage(prompts * 1, train)
    assert [p.split for p in split] == ["ranked", "ranked", "ranked", "ood", "ranked"]  # 1 of 5
    assert [p.prompt_id for p in split] == [p.prompt_id for p in prompts]  # order kept


def _counts(track_sets):
    from evaluation.challenge.ood_split import coverage_counts

    return coverage_counts(track_sets)


def _key(p, counts):
    return novelty(tag_set(p.concepts), *_counts(counts))


def _synthetic_tracks(path, n):
    rows = []
    for i in range(n):
        spec = track_spec(i, seed=0)
        rows.append(
            {
                "track_id": spec.track_id,
                "caption": f"track {i}",
                "split": spec.split,
                "genre": [spec.genre],
                "instrument": list(spec.instruments),
                "mood": [spec.mood],
            }
        )
    pl.DataFrame(rows).write_parquet(path)
    return rows


def test_the_synthetic_set_gets_a_real_80_20_split_though_every_tag_is_seen(tmp_path):
    rows = _synthetic_tracks(tmp_path / "tracks.parquet", 500)  # the embedded default's 500 tracks
    train_tags = {
        t for r in rows if r["split"] == "train" for c in ("genre", "instrument", "mood") for t in r[c]
    }
    prompts = builtin_prompts(tmp_path / "tracks.parquet", n_prompts=100)
    assert all(t in train_tags for p in prompts for t in p.all_concepts)  # nothing unseen...
    ood = [p for p in prompts if p.split == "ood"]
    assert len(prompts) == 100 and len(ood) == 20  # ...and still an 80/20 split
    assert builtin_prompts(tmp_path / "tracks.parquet", n_prompts=100) == prompts  # reproducible
    train = [{c: r[c] for c in ("genre", "instrument", "mood")} for r in rows if r["split"] == "train"]
    tags, pairs = _counts([tag_set(t) for t in train])
    rarest = {p.prompt_id: -novelty(tag_set(p.concepts), tags, pairs)[2] for p in prompts}
    ood_rarest = max(rarest[p.prompt_id] for p in ood)
    # every tag pair is seen here, so the rarest pair decides: no ranked prompt has a rarer one than any ood one
    assert all(rarest[p.prompt_id] >= ood_rarest for p in prompts if p.split == "ranked"), sorted(
        rarest.values()
    )
    assert sum(rarest[p.prompt_id] for p in ood) / 20 < sum(rarest.values()) / 100
    save_prompts(tmp_path / "p.jsonl", prompts)
    assert load_prompts(tmp_path / "p.jsonl") == prompts  # the split travels with the saved prompt set
