"""The params schema: every section refuses a typo with the closest valid key; params.yaml and profiles pass."""

import pytest
import yaml

from pipelines.common.params import ParamsError, load_params, read_tree
from pipelines.common.schema import ParamsSchema, section_keys, validate_params

# one misspelt key per section (and nested section), with the key the message must suggest
TYPOS = [
    ({"data": {"prepared_dri": "x"}}, "data.prepared_dri", "data.prepared_dir"),
    ({"data": {"synthetic": {"n_track": 3}}}, "data.synthetic.n_track", "data.synthetic.n_tracks"),
    ({"data": {"jamendo": {"audio_rot": "x"}}}, "data.jamendo.audio_rot", "data.jamendo.audio_root"),
    (
        {"data": {"folder": {"caption_form_tags": True}}},
        "data.folder.caption_form_tags",
        "data.folder.caption_from_tags",
    ),
    ({"separate": {"segmnt": 7.8}}, "separate.segmnt", "separate.segment"),
    ({"codec": {"nam": "mel"}}, "codec.nam", "codec.name"),
    ({"codec": {"mel": {"n_mel": 64}}}, "codec.mel.n_mel", "codec.mel.n_mels"),
    ({"codec": {"acestep": {"dtyp": "float32"}}}, "codec.acestep.dtyp", "codec.acestep.dtype"),
    ({"encode": {"shard_row": 128}}, "encode.shard_row", "encode.shard_rows"),
    ({"text": {"max_lenght": 64}}, "text.max_lenght", "text.max_length"),
    ({"model": {"hiden": 128}}, "model.hiden", "model.hidden"),
    ({"train": {"stepz": 10}}, "train.stepz", "train.steps"),
    ({"train": {"lora": {"rnak": 8}}}, "train.lora.rnak", "train.lora.rank"),
    ({"train": {"replay": {"shares": 0.5}}}, "train.replay.shares", "train.replay.share"),
    ({"generate": {"cfg": 3.5}}, "generate.cfg", "generate.cfg_scale"),
    ({"evaluate": {"embeder": "spectral"}}, "evaluate.embeder", "evaluate.embedder"),
    ({"submit": {"rms_flor": 1e-4}}, "submit.rms_flor", "submit.rms_floor"),
    ({"ray": {"adress": "auto"}}, "ray.adress", "ray.address"),
    ({"pack": {"out_dri": "store"}}, "pack.out_dri", "pack.out_dir"),
    ({"evalaute": {}}, "evalaute", "evaluate"),
]


@pytest.mark.parametrize(("tree", "wrong", "right"), TYPOS, ids=[t[1] for t in TYPOS])
def test_typo_in_each_section_names_key_and_closest(tmp_path, tree, wrong, right):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert f"'{wrong}'" in message and f"'{right}'" in message and str(path) in message


def test_every_section_has_a_typo_test():
    sections = {key.rsplit(".", 1)[0] for key in section_keys() if "." in key}
    tested = {wrong.rsplit(".", 1)[0] for _, wrong, _ in TYPOS if "." in wrong}
    assert sections <= tested


@pytest.mark.parametrize(
    ("tree", "key"),
    [
        ({"train": {"steps": "many"}}, "train.steps"),
        ({"train": {"use_gpu": "yes"}}, "train.use_gpu"),
        ({"train": {"accum_steps": 0}}, "train.accum_steps"),
        ({"encode": {"workers": 1.5}}, "encode.workers"),
        ({"submit": {"rms_floor": -1.0}}, "submit.rms_floor"),
        ({"model": {"dt_rank": "big"}}, "model.dt_rank"),
        ({"text": {"path": 3}}, "text.path"),
    ],
)
def test_wrong_type_or_bound_names_the_key(tree, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        validate_params(tree)


def test_all_problems_reported_at_once():
    with pytest.raises(ParamsError) as info:
        validate_params({"encode": {"shard_row": 1}, "submit": {"rms_flor": 1}})
    assert "encode.shard_row" in str(info.value) and "submit.rms_flor" in str(info.value)


def test_params_yaml_keys_known_and_defaults_equal_schema():
    tree = read_tree("params.yaml")
    defaults = ParamsSchema().model_dump()

    def leaves(node, prefix=""):
        for key, value in node.items():
            yield from (
                leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
            )

    schema_defaults = dict(leaves(defaults))
    for key, value in leaves(tree):
        assert key in schema_defaults, key
        assert schema_defaults[key] == value, (
            f"{key}: params.yaml {value!r} != schema default {schema_defaults[key]!r}"
        )


def test_keys_agreed_for_parallel_work_are_optional_with_defaults():
    schema = validate_params({})
    assert schema.train.accum_steps == 1
    assert (schema.ray.address, schema.ray.storage) == ("", "")
    assert (schema.evaluate.alm_path, schema.evaluate.alm_batch_size) == ("", 4)
    validate_params(
        {
            "evaluate": {"judge": "alm", "alm_path": "/m", "alm_batch_size": 2},
            "ray": {"address": "auto", "storage": "s3://b/p"},
            "train": {"accum_steps": 4},
        }
    )


def test_paper_profile_passes_schema():
    validate_params(yaml.safe_load(open("profiles/paper.yaml")), "profiles/paper.yaml")


def test_blank_text_value_reads_as_empty_string():
    assert validate_params({"evaluate": {"reference_dir": None}}).evaluate.reference_dir == ""


def test_a_stage_refuses_a_typo_before_doing_work(tmp_path, monkeypatch):
    from pipelines import submit

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"submit": {"rms_flor": 0.1, "out_dir": "s"}}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match=r"submit\.rms_floor"):
        submit.main(["--params", "params.yaml"])
    assert not (tmp_path / "s").exists()


def test_section_keys():
    assert section_keys("submit") == [
        "submit.team",
        "submit.track",
        "submit.attempt",
        "submit.sample_rate",
        "submit.channels",
        "submit.seconds",
        "submit.rms_floor",
        "submit.out_dir",
    ]
    assert section_keys("data.jamendo.strict") == ["data.jamendo.strict"]
    assert "codec.mel.n_mels" in section_keys("codec")
    with pytest.raises(KeyError):
        section_keys("submit.nope")


def test_yaml_spellings_the_stages_accept_are_accepted():
    # PyYAML reads 1e-3 and 3e5 as strings; the stages convert them, so the schema must not refuse them
    tree = yaml.safe_load("train:\n  lr: 1e-3\n  steps: 3e5\n  use_gpu: 'true'\n  frames: 64.0\n")
    assert tree["train"]["lr"] == "1e-3"
    checked = validate_params(tree).train
    assert (checked.lr, checked.steps, checked.use_gpu, checked.frames) == (0.001, 300000, True, 64)
    for bad in ({"lr": True}, {"steps": 2.5}, {"use_gpu": "yes"}, {"lr": "fast"}):
        with pytest.raises(ParamsError):
            validate_params({"train": bad})
