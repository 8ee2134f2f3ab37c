import json

import polars as pl
import pytest

from evaluation.challenge.prompts import (
    Prompt,
    PromptSetError,
    builtin_prompts,
    load_prompts,
    resolve_prompts,
    save_prompts,
)


def test_jsonl_with_concept_mapping_and_jamendo_tags(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps(
            {
                "prompt_id": "p1",
                "caption": "calm  piano ballad",
                "concepts": {"genre": ["ballad"], "instrument": ["piano"], "mood/theme": ["calm"]},
            }
        )
        + "\n\n"
        + json.dumps({"id": "p2", "prompt": "rock", "concepts": ["genre---rock", "drums"]})
        + "\n"
    )
    p1, p2 = load_prompts(path)
    assert p1 == Prompt(
        "p1", "calm piano ballad", {"genre": ("ballad",), "instrument": ("piano",), "mood": ("calm",)}
    )
    assert p2.concepts == {"genre": ("rock",), "concept": ("drums",)}
    assert p2.all_concepts == ("rock", "drums")


def test_json_list_and_wrapped_object(tmp_path):
    items = [{"prompt_id": "a", "text": "jazz trio", "genre": "jazz", "instrument": ["piano", "bass"]}]
    (tmp_path / "l.json").write_text(json.dumps(items))
    (tmp_path / "w.json").write_text(json.dumps({"prompts": items}))
    for name in ("l.json", "w.json"):
        (p,) = load_prompts(tmp_path / name)
        assert p.caption == "jazz trio"
        assert p.concepts == {"genre": ("jazz",), "instrument": ("piano", "bass")}


def test_csv_with_category_columns_and_tsv_with_concept_list(tmp_path):
    (tmp_path / "p.csv").write_text(
        "prompt_id,caption,genre,instrument,mood\r\n"
        "c1,Upbeat pop with synth,pop,synthesizer;drums,happy\r\n"
        "c2,Sad strings,,strings,sad|melancholic\r\n"
    )
    c1, c2 = load_prompts(tmp_path / "p.csv")
    assert c1.concepts == {"genre": ("pop",), "instrument": ("synthesizer", "drums"), "mood": ("happy",)}
    assert c2.concepts == {"instrument": ("strings",), "mood": ("sad", "melancholic")}
    (tmp_path / "p.tsv").write_text('id\tprompt\tconcepts\nt1\tlofi beat\t["lofi", "genre---hiphop"]\n')
    (t1,) = load_prompts(tmp_path / "p.tsv")
    assert t1.concepts == {"concept": ("lofi",), "genre": ("hiphop",)}


def test_empty_caption_names_the_file_and_prompt(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("prompt_id,caption\nok1,fine\nempty7,   \n")
    with pytest.raises(PromptSetError, match=r"bad\.csv.*'empty7'.*empty caption"):
        load_prompts(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prompt_id,caption\na,x\na,y\n", "duplicate prompt id"),
        ("prompt_id,caption\n../evil,x\n", "cannot name a file"),
        ("caption\nx\n", "no prompt id"),
        ("prompt_id,caption\n", "holds no prompts"),
    ],
)
def test_bad_prompt_files_fail_with_a_reason(tmp_path, content, message):
    path = tmp_path / "p.csv"
    path.write_text(content)
    with pytest.raises(PromptSetError, match=message):
        load_prompts(path)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(PromptSetError, match="not found"):
        load_prompts(tmp_path / "nope.jsonl")
    (tmp_path / "p.yaml").write_text("x")
    with pytest.raises(PromptSetError, match="unknown prompt file type"):
        load_prompts(tmp_path / "p.yaml")


def test_save_then_load_round_trips(tmp_path):
    prompts = [Prompt("a", "one", {"genre": ("rock",)}, split="ood"), Prompt("b", "two", {})]
    save_prompts(tmp_path / "out.jsonl", prompts)
    loaded = load_prompts(tmp_path / "out.jsonl")
    # a prompt without concepts is looked up in its caption once, and says so; after that the set is stable
    assert loaded == [prompts[0], Prompt("b", "two", {}, concepts_from="caption")]
    save_prompts(tmp_path / "again.jsonl", loaded)
    assert load_prompts(tmp_path / "again.jsonl") == loaded


def _tracks(tmp_path, n_test: int):
    rows = []
    for i in range(2 * n_test + 3):
        rows.append(
            {
                "track_id": f"track_{i:07d}",
                "audio_path": f"a/{i}.wav",
                "duration": 12.0,
                "genre": [f"g{i}"],
                "instrument": ["piano"],
                "mood": [],
                "caption": f"caption {i}",
                "split": "test" if i % 2 == 0 and i < 2 * n_test else "train",
            }
        )
    path = tmp_path / "tracks.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path


def test_builtin_set_is_the_test_split_seeded_and_stable(tmp_path):
    path = _tracks(tmp_path, n_test=8)
    all_test = builtin_prompts(path, n_prompts=100)
    assert [p.prompt_id for p in all_test] == [f"track_{i:07d}" for i in range(0, 16, 2)]
    assert all_test[1].concepts == {"genre": ("g2",), "instrument": ("piano",), "mood": ()}
    assert all_test[1].all_concepts == ("g2", "piano")
    five = builtin_prompts(path, n_prompts=5, seed=3)
    assert len(five) == 5 and five == builtin_prompts(path, n_prompts=5, seed=3)
    assert {p.prompt_id for p in five} <= {p.prompt_id for p in all_test}
    assert [p.prompt_id for p in five] == sorted(p.prompt_id for p in five)
    assert five != builtin_prompts(path, n_prompts=5, seed=4)
    assert resolve_prompts("builtin", path, 5, 3) == five


def test_builtin_without_test_split_or_columns_fails(tmp_path):
    path = tmp_path / "tracks.parquet"
    pl.DataFrame(
        {
            "track_id": ["t"],
            "caption": ["c"],
            "split": ["train"],
            "genre": [["g"]],
            "instrument": [["i"]],
            "mood": [["m"]],
        }
    ).write_parquet(path)
    with pytest.raises(PromptSetError, match="split == 'test'"):
        builtin_prompts(path)
    pl.DataFrame({"track_id": ["t"], "split": ["test"]}).write_parquet(path)
    with pytest.raises(PromptSetError, match="missing column"):
        builtin_prompts(path)


def test_resolve_file_cuts_to_n_prompts(tmp_path):
    save_prompts(tmp_path / "p.jsonl", [Prompt(f"p{i}", f"c{i}") for i in range(4)])
    assert [p.prompt_id for p in resolve_prompts(str(tmp_path / "p.jsonl"), "unused", 2)] == ["p0", "p1"]
    assert len(resolve_prompts(str(tmp_path / "p.jsonl"), "unused", 0)) == 4


def test_split_column_marks_the_ranked_and_ood_prompts(tmp_path):
    (tmp_path / "p.csv").write_text(
        "id,prompt,split\na,calm piano,ranked\nb,loud rock,ood\nc,sad strings,\nd,jazz,out-of-distribution\n"
    )
    assert [p.split for p in load_prompts(tmp_path / "p.csv")] == ["ranked", "ood", "ranked", "ood"]
    (tmp_path / "q.jsonl").write_text(
        '{"id": "a", "prompt": "x", "in_distribution": false}\n{"id": "b", "prompt": "y", "in_distribution": "true"}\n'
    )
    assert [p.split for p in load_prompts(tmp_path / "q.jsonl")] == ["ood", "ranked"]
    (tmp_path / "bad.csv").write_text("id,prompt,split\na,x,maybe\n")
    with pytest.raises(
        PromptSetError, match=r"bad\.csv, prompt a: split 'maybe' is not one of 'ranked' or 'ood'"
    ):
        load_prompts(tmp_path / "bad.csv")


def test_the_official_id_prompt_csv_gets_concepts_from_its_captions(tmp_path, caplog):
    (tmp_path / "test.csv").write_text(
        'id,prompt\n001,"An upbeat hip-hop track with a groovy bass line"\n002,"Waves on a beach"\n'
    )
    with caplog.at_level("INFO"):
        one, two = load_prompts(tmp_path / "test.csv")
    assert one.concepts == {"genre": ("hiphop",), "instrument": ("bass",), "mood": ("upbeat", "groovy")}
    assert (one.concepts_from, two.concepts, two.concepts_from) == ("caption", {}, "caption")
    assert "001: genre: hiphop; instrument: bass; mood: upbeat, groovy" in caplog.text
    assert "1 prompt(s) name no genre, instrument or mood (002)" in caplog.text
    # concepts that come with the prompt are kept as given
    (tmp_path / "given.csv").write_text('id,prompt,genre\n003,"An upbeat hip-hop track",jazz\n')
    (given,) = load_prompts(tmp_path / "given.csv")
    assert given.concepts == {"genre": ("jazz",)} and given.concepts_from == "given"
