import pytest
import torch

from model.network.bimamba import BiMamba, lengths_from_mask, reverse_within_length

F64 = torch.float64
D_MODEL = 16


def make_layer(**kwargs) -> BiMamba:
    return BiMamba(D_MODEL, d_state=4, scan_backend="torch", chunk_size=8, **kwargs).to(F64)


def mask_for(lengths: list[int], time: int) -> torch.Tensor:
    return torch.arange(time)[None, :] < torch.tensor(lengths)[:, None]


def swapped_copy(layer: BiMamba) -> BiMamba:
    """The same layer with its two mixers exchanged (and the halves of out_proj's input exchanged with them)."""
    swapped = make_layer()
    state = {}
    for key, value in layer.state_dict().items():
        if key.startswith("mamba_fwd."):
            state["mamba_rev." + key.removeprefix("mamba_fwd.")] = value
        elif key.startswith("mamba_rev."):
            state["mamba_fwd." + key.removeprefix("mamba_rev.")] = value
        else:
            state[key] = value
    weight = state["out_proj.weight"]
    state["out_proj.weight"] = torch.cat([weight[:, D_MODEL:], weight[:, :D_MODEL]], dim=1)
    swapped.load_state_dict(state, strict=True)
    return swapped


def test_two_independent_mixers_and_projection():
    layer = make_layer()
    keys = layer.state_dict().keys()
    assert {k.split(".")[0] for k in keys} == {"mamba_fwd", "mamba_rev", "out_proj"}
    assert layer.out_proj.weight.shape == (D_MODEL, 2 * D_MODEL)
    assert not torch.equal(layer.mamba_fwd.dt_proj.bias, layer.mamba_rev.dt_proj.bias)


def test_pad_invariance_across_padding_amounts_and_garbage_pads():
    layer = make_layer()
    lengths = [5, 12, 9]
    sequences = [torch.randn(n, D_MODEL, dtype=F64) for n in lengths]
    alone = [layer(seq[None])[0] for seq in sequences]  # each sequence on its own, no padding at all
    for time in (12, 20):
        batch = torch.full((3, time, D_MODEL), float("nan"), dtype=F64)  # pads hold garbage, even NaN
        for row, seq in enumerate(sequences):
            batch[row, : len(seq)] = seq
        out = layer(batch, mask_for(lengths, time))
        for row, n in enumerate(lengths):
            torch.testing.assert_close(out[row, :n], alone[row], rtol=0, atol=1e-12)
            assert torch.equal(out[row, n:], torch.zeros(time - n, D_MODEL, dtype=F64))


def test_padded_frames_get_no_gradient_path_to_valid_outputs():
    layer = make_layer()
    x = torch.randn(2, 14, D_MODEL, dtype=F64, requires_grad=True)
    mask = mask_for([8, 14], 14)
    layer(x, mask)[mask].sum().backward()
    assert torch.equal(x.grad[0, 8:], torch.zeros(6, D_MODEL, dtype=F64))
    assert x.grad[0, :8].abs().min() > 0


def test_reverse_direction_sees_the_future():
    layer = make_layer()
    x = torch.randn(1, 10, D_MODEL, dtype=F64)
    changed = x.clone()
    changed[0, 9] += 1.0
    assert (layer(changed)[0, 0] - layer(x)[0, 0]).abs().max() > 1e-6


@pytest.mark.parametrize("with_mask", [False, True])
def test_flip_equivariance_with_swapped_mixers(with_mask):
    layer = make_layer()
    swapped = swapped_copy(layer)
    lengths = [11, 7, 4]
    x = torch.randn(3, 11, D_MODEL, dtype=F64)
    if with_mask:
        mask = mask_for(lengths, 11)
        lengths_t = torch.tensor(lengths)
        expected = reverse_within_length(layer(x, mask), lengths_t)
        actual = swapped(reverse_within_length(x, lengths_t), mask)
    else:
        expected = layer(x).flip(1)
        actual = swapped(x.flip(1))
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)


def test_reverse_within_length_is_an_involution_that_keeps_pads_in_place():
    x = torch.arange(2 * 6, dtype=F64).reshape(2, 6, 1)
    lengths = torch.tensor([4, 6])
    reversed_x = reverse_within_length(x, lengths)
    assert reversed_x[0, :, 0].tolist() == [3.0, 2.0, 1.0, 0.0, 4.0, 5.0]
    assert reversed_x[1, :, 0].tolist() == [11.0, 10.0, 9.0, 8.0, 7.0, 6.0]
    assert torch.equal(reverse_within_length(reversed_x, lengths), x)


def test_full_mask_equals_no_mask():
    layer = make_layer()
    x = torch.randn(2, 9, D_MODEL, dtype=F64)
    torch.testing.assert_close(layer(x, torch.ones(2, 9, dtype=torch.bool)), layer(x), rtol=0, atol=1e-14)


def test_bad_masks_are_clear_errors():
    layer = make_layer()
    x = torch.randn(2, 6, D_MODEL, dtype=F64)
    left_padded = torch.tensor([[False, False, True, True, True, True]] * 2)
    with pytest.raises(ValueError, match="right-padded"):
        layer(x, left_padded)
    with pytest.raises(ValueError, match="mask shape"):
        layer(x, torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        lengths_from_mask(torch.ones(2, 6))
