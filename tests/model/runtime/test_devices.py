import pytest
import torch

from model.runtime.devices import resolve_device


def test_auto_picks_cuda_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    for spec in (None, "", "auto"):
        assert resolve_device(spec).type == expected


def test_explicit_device_is_kept_and_a_bad_one_names_the_param():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="separate.device = 'gpu0'"):
        resolve_device("gpu0", "separate.device")
