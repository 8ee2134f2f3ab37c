"""model.flow.render: the one request path of the command line and the studio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from model.flow.editing import EditError
from model.flow.render import Edit, RenderRequest, RequestError, check_request, parse_region, render
from model.flow.sampling import SamplerConfig
from model.flow.text_to_music import TextToMusic
from tests.pipelines.conftest import build_tiny_model

SAMPLER = SamplerConfig(2, 1.5, "euler")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return TextToMusic.from_dir(build_tiny_model(tmp_path_factory.mktemp("model")), "cpu", "fp32")


def _wav(path, seconds):
    sf.write(str(path), np.zeros((int(seconds * 44100), 2), np.float32) + 0.1, 44100)
    return str(path)


def _edit(kind, source, region=None, repeats=1, crossfade=0.25):
    return Edit(kind, source, region, repeats, crossfade, f"--{kind}")


def test_requests_no_engine_can_serve_are_refused_before_any_model(tmp_path):
    src = _wav(tmp_path / "in.wav", 8.0)
    refused = {
        "prompt is empty": RenderRequest("  ", 10.0, SAMPLER, 0),
        "needs --region": RenderRequest("x", 10.0, SAMPLER, 0, _edit("inpaint", src)),
        "only applies with --inpaint": RenderRequest(
            "x", 10.0, SAMPLER, 0, _edit("continue", src, (1.0, 2.0))
        ),
        "--repeats must be >= 1": RenderRequest("x", 10.0, SAMPLER, 0, _edit("continue", src, repeats=0)),
        "--crossfade must be >= 0": RenderRequest(
            "x", 10.0, SAMPLER, 0, _edit("continue", src, crossfade=-1)
        ),
        r"cannot read --continue .*missing\.wav": RenderRequest(
            "x", 10.0, SAMPLER, 0, _edit("continue", str(tmp_path / "missing.wav"))
        ),
        r"ends after the input, which is 8\.000 s": RenderRequest(
            "x", 10.0, SAMPLER, 0, _edit("inpaint", src, (7.0, 9.0))
        ),
        "not longer than the input": RenderRequest("x", 8.0, SAMPLER, 0, _edit("continue", src)),
    }
    for message, request in refused.items():
        with pytest.raises((RequestError, EditError), match=message):
            check_request(request)
    assert parse_region("4:6.5") == (4.0, 6.5)
    with pytest.raises(RequestError, match="START:END"):
        parse_region("4-6")


def test_render_is_the_engine_with_the_seeded_generator(engine, tmp_path):
    request = RenderRequest("calm piano", 10.0, SAMPLER, 7)
    out = render(engine, request)
    (expected,) = engine.generate(["calm piano"], [torch.Generator().manual_seed(7)], 10.0, SAMPLER)
    np.testing.assert_array_equal(out.audio, expected)
    assert out.generated.all() and out.seconds == 10.0
    assert not np.array_equal(render(engine, RenderRequest("calm piano", 10.0, SAMPLER, 8)).audio, out.audio)

    src = tmp_path / "take.wav"
    sf.write(str(src), out.audio.T, 44100, subtype="FLOAT")
    inpainted = render(
        engine, RenderRequest("calm piano", 10.0, SAMPLER, 7, _edit("inpaint", str(src), (4.0, 6.0)))
    )
    span = np.flatnonzero(inpainted.generated)
    assert (span[0], span[-1] + 1) == (4 * 44100, 6 * 44100)
    np.testing.assert_array_equal(inpainted.audio[:, : 4 * 44100], out.audio[:, : 4 * 44100])
