"""generate.precision: what the sampler runs under (bf16 autocast, or fp32 with TF32 matmuls on CUDA), restored after."""

import pytest
import torch

from model.flow.precision import PRECISIONS, check_precision, sampling_precision


def test_bf16_autocasts_on_the_device():
    with sampling_precision("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.randn(2, 3) @ torch.randn(3, 2)).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")


def test_fp32_allows_tf32_matmuls_on_cuda_only_and_restores_the_setting():
    before = torch.backends.cuda.matmul.allow_tf32
    with sampling_precision("fp32", torch.device("cuda", 0)):  # sets a flag only: no GPU needed
        assert torch.backends.cuda.matmul.allow_tf32
        assert not torch.is_autocast_enabled("cpu")
    assert torch.backends.cuda.matmul.allow_tf32 == before
    with sampling_precision("fp32", "cpu"):
        assert torch.backends.cuda.matmul.allow_tf32 == before
        assert (torch.randn(2, 3) @ torch.randn(3, 2)).dtype == torch.float32
    with pytest.raises(RuntimeError), sampling_precision("fp32", "cuda"):
        raise RuntimeError("the setting is restored on errors too")
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_unknown_precision_names_the_key():
    assert PRECISIONS == ("fp32", "bf16") and check_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match=r"generate\.precision = 'fp16'.*fp32, bf16"):
        with sampling_precision("fp16", "cpu"):
            pass
