import pytest
import yaml

from pipelines.common.params import load_params
from pipelines.profile import flatten, load_profile, main, merge, set_args


def test_paper_profile_keys_all_exist_in_params():
    base = load_params("params.yaml")
    merged = merge(base, load_profile("paper"))
    assert merged["model"]["depth"] == 24 and merged["model"]["hidden"] == 512
    assert merged["train"]["steps"] == 300000
    assert merged["generate"]["steps"] == 100 and merged["generate"]["cfg_scale"] == 3.5
    assert base["model"]["depth"] != 24, "merge must not modify its input"


def test_set_args_round_trip_through_yaml():
    base = {"a": {"b": 1, "c": "x"}, "d": 2.5}
    args = set_args({"a": {"c": "flan-t5"}, "d": 0.0003}, base)
    assert args[0] == "-S" and args[2] == "-S"
    pairs = dict(a.split("=", 1) for a in args[1::2])
    assert yaml.safe_load(pairs["a.c"]) == "flan-t5"
    assert yaml.safe_load(pairs["d"]) == 0.0003


def test_unknown_key_is_an_error():
    with pytest.raises(KeyError, match="train.stepz"):
        merge({"train": {"steps": 1}}, {"train": {"stepz": 2}})


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
