"""The studio's API endpoints (what the page's buttons call) through ``gradio_client``: inpaint an earlier take,
several variations at once, and a refused request answered with its reason."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from gradio_client.exceptions import AppError

COMMON = ("start", "soft rain on a tin roof", "euler", 2, 1.5, "fixed")


def test_variations_inpaint_and_a_refusal_through_the_api(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    status, seed, earlier, *slots = client.predict(*COMMON, 50, 2, 10.0, api_name="/generate")
    assert status.startswith("2 takes rendered") and seed == 50
    takes = [slots[4 * k : 4 * k + 4] for k in range(2)]  # audio, spectrogram, download, settings per take
    assert "seed 50" in takes[0][3] and "seed 51" in takes[1][3]
    first, second = (sf.read(t[0], dtype="float32")[0] for t in takes)
    assert first.shape == second.shape == (441000, 2) and not np.array_equal(first, second)
    source = earlier["value"]  # the newest take, preselected for editing
    assert source.endswith(".wav") and [c[1] for c in earlier["choices"]][:2] == [
        source,
        earlier["choices"][1][1],
    ]

    status, _, _, audio, png, _, settings, *_ = client.predict(
        *COMMON, 60, 1, source, None, 0.0, 1, 4.0, 6.0, api_name="/inpaint"
    )
    assert status.startswith("1 take rendered") and "inpainting 4–6 s of take" in settings
    edited, sr = sf.read(audio, dtype="float32")
    assert (sr, edited.shape) == (44100, (441000, 2))
    np.testing.assert_array_equal(edited[: 4 * 44100], second[: 4 * 44100])  # kept exactly (no crossfade)
    assert not np.allclose(
        edited[int(4.2 * 44100) : int(5.8 * 44100)], second[int(4.2 * 44100) : int(5.8 * 44100)]
    )
    assert open(png, "rb").read(4) == b"\x89PNG"

    refused = client.predict(*COMMON, 61, 1, source, None, 0.25, 1, 9.0, 12.0, api_name="/inpaint")
    assert "ends after the input, which is 10.000 s long" in refused[0] and refused[0].startswith(
        "**Cannot render"
    )
    with pytest.raises(
        AppError, match="greater than maximum value 180"
    ):  # the slider's bound, checked by gradio
        client.predict(*COMMON, 62, 1, 400.0, api_name="/generate")
    refused = client.predict(*COMMON, 62, 1, source, None, 0.25, 1, 175.0, api_name="/continue")
    assert "185 s is longer than this studio renders per clip (180 s, --max-seconds)" in refused[0]
    with pytest.raises(
        AppError, match="not in the list of choices"
    ):  # only this session's takes can be edited
        client.predict(*COMMON, 63, 1, "/etc/passwd", None, 0.25, 1, 10.0, api_name="/continue")
