import re

import pytest
import yaml

from pipelines.common.params import read_tree
from pipelines.profile import flatten, load_profile, main, merge, set_args
from tests.cli import user_error


def test_paper_profile_keys_all_exist_in_params():
    base = read_tree("params.yaml")
    merged = merge(base, load_profile("paper"))
    assert merged["model"]["depth"] == 24 and merged["model"]["hidden"] == 512
    assert merged["train"]["steps"] == 300000
    assert merged["generate"]["steps"] == 100 and merged["generate"]["cfg_scale"] == 3.5
    assert base["model"]["depth"] != 24, "merge must not modify its input"


def test_set_args_round_trip_through_yaml():
    base = {"text": {"encoder": "minilm", "max_length": 64}, "train": {"lr": 2.5}}
    args = set_args({"text": {"encoder": "flan-t5"}, "train": {"lr": 0.0003}}, base)
    assert args[0] == "-S" and args[2] == "-S"
    pairs = dict(a.split("=", 1) for a in args[1::2])
    assert yaml.safe_load(pairs["text.encoder"]) == "flan-t5"
    assert yaml.safe_load(pairs["train.lr"]) == 0.0003


def test_unknown_key_is_an_error_naming_the_closest():
    with pytest.raises(KeyError, match=r"train\.stepz.*train\.steps"):
        merge({"train": {"steps": 1}}, {"train": {"stepz": 2}})


def test_schema_key_missing_from_params_file_is_added():
    merged = merge({"train": {"steps": 1}}, {"train": {"accum_steps": 4}, "ray": {"address": "auto"}})
    assert merged == {"train": {"steps": 1, "accum_steps": 4}, "ray": {"address": "auto"}}


def test_set_args_adds_a_key_the_params_file_lacks_with_dvc_plus_syntax():
    args = set_args({"train": {"steps": 5, "accum_steps": 4}}, {"train": {"steps": 1}})
    assert args == ["-S", "train.steps=5", "-S", "+train.accum_steps=4"]


def test_wrong_type_in_profile_is_an_error():
    with pytest.raises(KeyError, match=r"train\.steps"):
        merge({"train": {"steps": 1}}, {"train": {"steps": "lots"}})


def test_print_mode_on_the_real_paper_profile(capsys, monkeypatch):
    from pipelines import profile

    monkeypatch.setattr(profile, "detected_gpu_memory_gib", lambda: None)  # the profile as written
    main(["paper"])
    out = capsys.readouterr().out.split()
    assert out[0] == "-S" and out[::2] == ["-S"] * (len(out) // 2)
    pairs = dict(a.split("=", 1) for a in out[1::2])
    assert pairs == {
        key: yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        for key, value in flatten(load_profile("paper")).items()
    }
    assert yaml.safe_load(pairs["model.depth"]) == 24 and pairs["codec.name"] == "acestep"
    assert yaml.safe_load(pairs["train.steps"]) == 300000


def test_unknown_profile_name_lists_known_ones(capsys):
    assert re.search(r"profiles/papr\.yaml.*known: .*paper", user_error(capsys, main, ["papr"]))


def test_profile_with_typo_fails_cleanly(tmp_path, monkeypatch, capsys):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bad.yaml").write_text(yaml.safe_dump({"generate": {"cfg_scal": 5.0}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"generate": {"cfg_scale": 3.5}}))
    monkeypatch.chdir(tmp_path)
    assert "generate.cfg_scale" in user_error(capsys, main, ["bad"])


def test_flatten():
    assert flatten({"a": {"b": {"c": 1}}, "d": [1, 2]}) == {"a.b.c": 1, "d": [1, 2]}


def test_write_applies_profile(tmp_path, monkeypatch):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"steps": 10, "lr": 0.1}}))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "big.yaml").write_text(yaml.safe_dump({"train": {"steps": 300000}}))
    monkeypatch.chdir(tmp_path)
    main(["big", "--params", str(params), "--write"])
    assert yaml.safe_load(params.read_text()) == {"train": {"steps": 300000, "lr": 0.1}}


def _pairs(capsys):
    out = capsys.readouterr().out.split()
    return dict(a.split("=", 1) for a in out[1::2])


@pytest.mark.parametrize(("memory", "batch", "accum"), [(24, 16, 4), (48, 32, 2), (80, 64, 1), (141, 64, 1)])
def test_paper_batch_follows_the_gpu_memory(capsys, memory, batch, accum):
    from pipelines import profile

    main(["paper", "--gpu-memory-gib", str(memory)])
    pairs = _pairs(capsys)
    assert (int(pairs["train.batch_size"]), int(pairs["train.accum_steps"])) == (batch, accum)
    assert profile.follows_memory(merge(read_tree("params.yaml"), load_profile("paper")))


def test_the_detected_gpu_memory_is_used(capsys, monkeypatch):
    from pipelines import profile

    monkeypatch.setattr(profile, "detected_gpu_memory_gib", lambda: 139.8)  # a fake H200
    main(["paper"])
    pairs = _pairs(capsys)
    assert (pairs["train.batch_size"], pairs["train.accum_steps"]) == ("64", "1")
    monkeypatch.setattr(profile, "detected_gpu_memory_gib", lambda: None)  # no GPU: the profile as written
    main(["paper"])
    pairs = _pairs(capsys)
    assert (pairs["train.batch_size"], pairs["train.accum_steps"]) == ("16", "4")


def test_other_networks_keep_their_batch(capsys, tmp_path, monkeypatch):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "small.yaml").write_text(yaml.safe_dump({"train": {"batch_size": 4}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {"batch_size": 8, "frames": 64}}))
    monkeypatch.chdir(tmp_path)
    main(["small", "--gpu-memory-gib", "80"])
    assert _pairs(capsys) == {"train.batch_size": "4"}
