import pytest
import torch

from model.codec.windowed import decode_long, decode_windowed, window_starts


class FrameLocalCodec:
    """decode: frame t -> ``spf`` samples of a frame-local function; exact under any windowing."""

    latent_dim = 3
    spf = 8
    decode_window = None
    decode_overlap = 0

    def __init__(self):
        self.lengths = []

    def decode(self, z):
        self.lengths.append(z.shape[-1])
        per_frame = torch.tanh(z).sum(dim=1, keepdim=True)  # (B, 1, T)
        return per_frame.repeat_interleave(self.spf, dim=-1)


@pytest.mark.parametrize(("n", "window", "overlap"), [(50, 16, 4), (17, 16, 4), (64, 16, 0), (33, 10, 9)])
def test_windowed_decode_equals_one_decode_for_a_frame_local_codec(n, window, overlap):
    codec = FrameLocalCodec()
    z = torch.randn(2, 3, n)
    full = codec.decode(z)
    out = decode_windowed(codec, z, window, overlap)
    assert out.shape == full.shape == (2, 1, n * codec.spf)
    torch.testing.assert_close(out, full)
    assert max(codec.lengths[1:]) <= window


def test_window_starts_cover_every_frame_and_end_at_the_last():
    for n, w, o in [(100, 16, 4), (16, 16, 4), (5, 16, 4), (1000, 512, 128)]:
        starts = window_starts(n, w, o)
        covered = torch.zeros(n, dtype=torch.bool)
        for s in starts:
            covered[s : s + w] = True
        assert covered.all() and starts[0] == 0 and min(starts[-1] + w, n) == n
        assert all(b - a <= w - o for a, b in zip(starts, starts[1:], strict=False))
    with pytest.raises(ValueError, match="overlap < window"):
        window_starts(10, 4, 4)


def test_decode_long_uses_the_codec_window_only_when_longer():
    codec = FrameLocalCodec()
    codec.decode_window, codec.decode_overlap = 10, 2
    decode_long(codec, torch.randn(1, 3, 10))
    assert codec.lengths == [10]
    codec.lengths.clear()
    decode_long(codec, torch.randn(1, 3, 25))
    assert codec.lengths == [10, 10, 10]
