"""The listening report in a real browser: headless Chromium (Debian ``chromium`` + ``chromium-driver``) via selenium.

Opens ``reports/index.html`` of a small evaluate run from the file system and checks that every ``<audio>`` and
``<img>`` loads (the generated clips, their reference clips and the "Generated beside reference" showcase with the
references through the codec), that the metric table shows metrics.json's numbers, that sorting works (keeping each
reference row with its prompt), and that a broken audio link is caught. Saves a screenshot (``$FLOWJAM_SCREENSHOT_DIR/report.png`` when set, else the test's tmp dir).
Skips only when no browser is installed, and says how to install one (``.ci/run`` does it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from pipelines.evaluate import run_stage
from tests import defaults
from tests.browser import chromium as _driver
from tests.evaluation.synthetic_fixture import build_world

LOAD_MEDIA = """
const done = arguments[arguments.length - 1];
const media = Array.from(document.querySelectorAll('audio'));
const state = a => ({src: a.getAttribute('src'), ready: a.readyState, error: a.error ? a.error.code : null});
Promise.all(media.map(a => new Promise(resolve => {
  if (a.readyState >= 1 || a.error) { resolve(); return; }
  a.addEventListener('loadedmetadata', resolve, {once: true});
  a.addEventListener('error', resolve, {once: true});
  a.load();
}))).then(() => done(media.map(state)));
"""
IMAGES = """return Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
                                                       showcase: i.closest('#showcase') !== null}));"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_world")
    build_world(root, n_tracks=20, seconds=10.0, generator="faithful", n_seeds=2)
    live = root / "dvclive" / "plots" / "metrics"
    for name, scale in (("train/loss", 1.0), ("val/loss", 1.2)):
        (live / name).parent.mkdir(parents=True, exist_ok=True)
        (live / f"{name}.tsv").write_text(
            "step\tloss\n" + "".join(f"{s}\t{scale * 3 / (1 + s / 50)}\n" for s in range(10, 410, 10))
        )
    params = {
        "data": {"prepared_dir": str(root / "data/prepared")},
        "separate": {"out_dir": str(root / "data/instrumental")},
        "generate": {"out_dir": str(root / "generated")},
        "codec": {"name": "mel", "device": "cpu", "mel": {"griffin_lim_iters": 8, "inversion_iters": 8}},
        "evaluate": {
            "tagger_steps": 40,
            "local_clap_steps": 30,
            "cache_dir": str(root / "cache"),
            "out_dir": str(root / "reports"),
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(defaults.params(params), live_dir=str(root / "dvclive"))
    return root / "reports"


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        yield from (_leaves(value, name + ".") if isinstance(value, dict) else [(name, value)])


@pytest.mark.slow
def test_report_loads_every_clip_and_shows_the_metrics(report):
    driver = _driver()
    try:
        driver.set_script_timeout(60)
        driver.get((report / "index.html").as_uri())
        media = driver.execute_async_script(LOAD_MEDIA)
        assert len(media) == 4 * 3  # 4 prompts x (2 seeds + the reference clip: each prompt's own test track)
        assert all(m["ready"] >= 1 and m["error"] is None for m in media), media
        assert sum(m["src"].startswith("../data/prepared/audio/") for m in media) == 4  # passthrough audio
        images = driver.execute_script(IMAGES)
        assert len(images) == 4 * 3 + 4 * 4 and all(i["ok"] for i in images), images
        # the showcase: 4 prompts x (reference, reference through the codec, 2 seeds), all decoded
        assert len(driver.find_elements("css selector", "#showcase tr.showcase")) == 4
        showcase = [i["src"] for i in images if i["showcase"]]
        assert len(showcase) == 16 and sum(s.endswith("/reference-codec.png") for s in showcase) == 4
        assert driver.find_elements("css selector", "svg[aria-label='training loss'] polyline")

        metrics = json.loads((report / "metrics.json").read_text())
        shown = {
            c.get_attribute("data-key"): c.text
            for c in driver.find_elements("css selector", "#metrics td[data-key]")
        }
        assert shown == {k: f"{v:.4f}" for k, v in _leaves(metrics)}
        assert len(driver.find_elements("css selector", "tr.chosen")) == 4

        driver.find_element("xpath", "//button[starts-with(., 'CCS')]").click()
        ccs = [
            float(b.get_attribute("data-ccs")) for b in driver.find_elements("css selector", "tbody.prompt")
        ]
        assert ccs == sorted(ccs, reverse=True)
        for group in driver.find_elements(
            "css selector", "tbody.prompt"
        ):  # the reference row moved with its prompt
            first = group.find_element("css selector", "tr")
            assert (
                first.get_attribute("class") == "reference"
                and group.get_attribute("data-prompt") in first.text
            )

        shots = Path(os.environ.get("FLOWJAM_SCREENSHOT_DIR", report))
        shots.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shots / "report.png"))

        # the check can fail: a clip moved away is reported as not loading
        first = sorted((report.parent / "generated").rglob("seed-0.wav"))[0]
        first.rename(first.with_suffix(".moved"))
        try:
            driver.get((report / "index.html").as_uri())
            broken = [
                m for m in driver.execute_async_script(LOAD_MEDIA) if m["error"] is not None or m["ready"] < 1
            ]
            assert len(broken) == 1 and broken[0]["src"].endswith(f"{first.parent.name}/seed-0.wav")
        finally:
            first.with_suffix(".moved").rename(first)
    finally:
        driver.quit()
