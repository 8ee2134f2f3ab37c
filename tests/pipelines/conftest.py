"""Fixtures shared by the pipelines tests."""

import pytest
import torch

from model.data.stats import Standardiser
from model.flow.trained import export_trained
from model.network.backbone import VelocityNet
from tests.defaults import net_config, section

N_MELS = 16
CODEC = section(
    "codec",
    name="mel",
    device="cpu",
    mel={
        "sample_rate": 22050,
        "n_fft": 512,
        "hop": 256,
        "n_mels": N_MELS,
        "f_max": 11025.0,
        "griffin_lim_iters": 2,
        "inversion_iters": 2,
    },
)
TEXT = section("text", encoder="minilm", max_length=16)


def build_tiny_model(out):
    """Write a tiny randomly initialised VelocityNet (seeded) in the models/final format to ``out``."""
    torch.manual_seed(0)
    cfg = net_config(
        latent_dim=N_MELS,
        text_dim=384,
        hidden=16,
        depth=1,
        d_state=4,
        heads=2,
        time_dim=16,
        scan_backend="torch",
    )
    net = VelocityNet(cfg)
    with torch.no_grad():  # zero-initialised output layers would make every velocity 0
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    stats = Standardiser(tuple([-3.0] * N_MELS), tuple([1.0] * N_MELS))
    export_trained(out, net.state_dict(), cfg.to_dict(), CODEC, TEXT, stats, steps=1)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny randomly initialised VelocityNet saved in the models/final format."""
    return build_tiny_model(tmp_path_factory.mktemp("final"))
