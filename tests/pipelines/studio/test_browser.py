"""The studio in a real browser (headless Chromium): type a caption, generate, check the audio element holds a WAV
of the asked length and that the shown command line renders the same audio; continue that take to a longer clip;
an unreadable upload shows its error in the page. Saves screenshots (``$FLOWJAM_SCREENSHOT_DIR`` when set, else
the test's tmp dir): ``studio.png`` (a take), ``studio-continue.png`` (the kept span marked), ``studio-error.png``.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evaluation.report.figures import HOP, N_FFT
from tests.browser import chromium
from tests.pipelines.studio.conftest import cli_env

WAIT_S = 120
AUDIO = """const a = document.querySelector(arguments[0] + ' audio');
return a ? {src: a.getAttribute('src') || '', ready: a.readyState, duration: a.duration} : null;"""


def _wait(driver, condition, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    driver.save_screenshot(str(Path(os.environ.get("FLOWJAM_SCREENSHOT_DIR", "/tmp")) / "studio-timeout.png"))
    raise AssertionError(
        f"timed out waiting for {what}; page says: {driver.find_element('tag name', 'body').text[-2000:]}"
    )


def _new_audio(driver, previous: str = "") -> dict:
    """The first take's audio element once it holds a new, loaded file."""

    def ready():
        state = driver.execute_script(AUDIO, "#take-0-audio")
        ok = state and state["src"] and state["src"] != previous and state["ready"] >= 1
        return state if ok else None

    return _wait(driver, ready, "the take's audio")


def _wav(url: str) -> tuple[np.ndarray, int]:
    with urllib.request.urlopen(url, timeout=30) as response:
        data = response.read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return audio.T, sr


def _shots(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("FLOWJAM_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def _text(driver, css: str) -> str:
    """The rendered text of every element matching ``css`` (read in the page: no stale element handles)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText).join('\\n');", css
    )


def _click_text(driver, css: str, text: str) -> None:
    """Click the element matching ``css`` whose text is ``text``, once the page has rendered it."""
    script = """const hit = Array.from(document.querySelectorAll(arguments[0]))
                   .find(e => e.innerText.trim() === arguments[1]);
                if (hit) { hit.click(); return true; } return false;"""
    _wait(driver, lambda: driver.execute_script(script, css, text), f"{css} {text!r}")


def test_generate_continue_and_a_bad_upload_in_chromium(server, tmp_path):
    shots = _shots(tmp_path)
    driver = chromium("1400,2200")
    try:
        driver.get(server.url)
        _wait(driver, lambda: driver.find_elements("css selector", "#caption textarea"), "the page")
        driver.find_element("css selector", "#caption textarea").send_keys("calm piano ballad")
        _click_text(driver, "#seed-mode label", "fixed")
        seed_box = driver.find_element("css selector", "#seed input")
        seed_box.clear()
        seed_box.send_keys("1234")
        driver.find_element("css selector", "#generate").click()
        first = _new_audio(driver)
        assert first["duration"] == pytest.approx(10.0, abs=1e-3)
        audio, sr = _wav(first["src"])
        assert (sr, audio.shape) == (44100, (2, 10 * 44100))
        assert np.sqrt(np.mean(audio**2)) > 1e-3
        settings = _text(driver, "#take-0-settings")
        assert "seed 1234" in settings and "euler 16 steps" in settings
        image = driver.find_element("css selector", "#take-0-spectrogram img")
        assert image.get_attribute("naturalWidth") == str(1 + (10 * 44100 - N_FFT) // HOP)  # the whole clip
        assert driver.save_screenshot(str(shots / "studio.png"))

        # the command shown under the take, run as it is (a fresh process, default threads), gives the same audio
        command = shlex.split(_text(driver, "#take-0-settings code"))
        assert command[:3] == ["python", "-m", "pipelines.generate"] and command[-2] == "-o"
        cli_run = [sys.executable, *command[1:-1], str(tmp_path / "cli.wav"), "--params", "absent.yaml"]
        done = subprocess.run(
            cli_run, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        cli, _ = sf.read(str(tmp_path / "cli.wav"), dtype="float32", always_2d=True)
        np.testing.assert_array_equal(cli.T, audio)

        # continue that take by 10 s: the earlier take is preselected in the continuation tab
        _click_text(driver, "button[role='tab']", "Continue / inpaint")
        driver.find_element("css selector", "#continue").click()
        longer = _new_audio(driver, previous=first["src"])
        assert longer["duration"] == pytest.approx(20.0, abs=1e-3)
        extended, sr = _wav(longer["src"])
        assert (sr, extended.shape) == (44100, (2, 20 * 44100))
        np.testing.assert_allclose(extended[:, : 9 * 44100], audio[:, : 9 * 44100], atol=2 / 32768)
        assert "continuation of take" in _text(driver, "#take-0-settings")
        assert driver.save_screenshot(str(shots / "studio-continue.png"))

        # an unreadable upload: the page says so, no traceback
        bad = tmp_path / "broken.wav"
        bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
        driver.find_element("css selector", "#upload input[type='file']").send_keys(str(bad))
        _wait(
            driver, lambda: "broken" in _text(driver, "#upload"), "the upload"
        )  # name and suffix render apart
        driver.find_element("css selector", "#continue").click()
        status = _wait(
            driver,
            lambda: "cannot be read" in (t := _text(driver, "#status")) and t,
            "the upload's error message",
        )
        assert re.search(r"broken\.wav cannot be read as audio \(.+\); upload WAV, FLAC, OGG or MP3", status)
        assert "/tmp/" not in status  # the server's temporary path is not shown
        body = driver.find_element("tag name", "body").text
        assert "Traceback" not in body and status in body
        assert driver.execute_script(AUDIO, "#take-0-audio")["src"] == longer["src"]  # the takes stay
        assert driver.save_screenshot(str(shots / "studio-error.png"))
    finally:
        driver.quit()
