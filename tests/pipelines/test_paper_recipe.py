"""The paper profile's training recipe: every number cited, and a 2-step CPU run of its train section."""

import re
from pathlib import Path

from model.training.setup import run_training
from pipelines.common.params import read_tree
from pipelines.profile import load_profile, merge
from pipelines.train import train_job
from tests import defaults
from tests.model.training.fixtures import HashTextEncoder, tiny_params, write_fixture_shards

ROOT = Path(__file__).resolve().parents[2]
RECIPE_KEYS = (
    "batch_size",
    "accum_steps",
    "lr",
    "min_lr_ratio",
    "warmup",
    "weight_decay",
    "grad_clip",
    "ema_decay",
    "cond_drop",
    "t_mean",
)
SOURCES = ("DiT", "SiT", "SAO", "F5-TTS", "ACE-Step", "SD3", "docs/gpu.md")


def test_every_training_number_of_the_paper_profile_cites_a_source():
    lines = (ROOT / "profiles" / "paper.yaml").read_text().splitlines()
    start = lines.index("train:")
    comments = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        match = re.match(r"\s+(\w+):\s*[^#]*#\s*(.*)", line)
        if match:
            comments[match.group(1)] = match.group(2)
    for key in RECIPE_KEYS:
        assert key in comments and any(s in comments[key] for s in SOURCES), f"train.{key}: no cited source"


def test_paper_train_section_runs_two_steps_on_cpu(tmp_path):
    """The profile's train section as is (accumulation, schedule, EMA, dropout) with CPU-sized batch and crop."""
    paper = merge(read_tree(ROOT / "params.yaml"), load_profile("paper", ROOT / "profiles"))["train"]
    assert paper["accum_steps"] == 4 and paper["use_gpu"] is True
    write_fixture_shards(tmp_path)
    params = tiny_params(tmp_path)
    keep = {k: params["train"][k] for k in ("ckpt_dir", "out_dir")}
    params["train"] = {
        **paper,
        **keep,
        "steps": 2,
        "batch_size": 2,
        "frames": 16,
        "use_gpu": False,
        "val_every": 2,
        "ckpt_every": 2,
        "log_every": 1,
    }
    result = run_training(
        train_job(defaults.params(params)), live_dir=str(tmp_path / "dvclive"), text_encoder=HashTextEncoder()
    )
    assert result.step == 2 and result.nan_skipped == 0 and result.last_val_loss is not None
