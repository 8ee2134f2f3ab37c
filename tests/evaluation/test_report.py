"""The listening report's page without a browser: links resolve, numbers and labels match, chosen seeds marked."""

from __future__ import annotations

import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa

from evaluation.report import write_report
from model.audio.io import write_audio


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.images, self.cells, self.chosen_rows = [], [], {}, 0
        self._key = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "audio":
            self.sources.append(a["src"])
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "td" and "data-key" in a:
            self._key = a["data-key"]
        elif tag == "tr" and a.get("class") == "chosen":
            self.chosen_rows += 1

    def handle_data(self, data):
        if self._key is not None:
            self.cells[self._key] = data
            self._key = None


def _world(tmp_path: Path) -> pa.Table:
    rows = []
    for p in ("p1", "p2"):
        for seed in (0, 1):
            path = tmp_path / "generated" / p / f"seed-{seed}.wav"
            write_audio(path, np.full((2, 22050), 0.1 * (seed + 1), np.float32), 44100)
            rows.append({"prompt_id": p, "seed": seed, "path": str(path), "caption": f"<{p}> & co",
                         "fad_distance": 1.0 + seed, "text_audio": 0.5, "ccs": 0.5,
                         "concepts_present": ["genre:rock"], "concepts_missing": ["mood:calm"],
                         "chosen": seed == (p == "p2")})
    return pa.Table.from_pylist(rows)


def test_page_links_numbers_and_labels(tmp_path):
    metrics = {"fad": 3.14159, "clap": 0.25, "ccs": 0.5, "ccs_margin": 0.125,
               "first_seed": {"fad": 4.0, "clap": 0.2, "ccs": 0.4, "ccs_margin": 0.1},
               "all_seeds": {"fad": 3.5, "clap": 0.22, "ccs": 0.45, "ccs_margin": 0.11},
               "ceiling": {"fad": 1.5}}  # a captionless reference set: fad only
    details = {"metric_sources": {"fad": {"challenge_metric": True, "what": "FAD on LAION-CLAP"},
                                  "clap": {"challenge_metric": False, "what": "offline stand-in: local model"},
                                  "ccs": {"challenge_metric": False, "what": "offline stand-in: tagger"}}}
    curves = {"train/loss": (np.array([10.0, 20.0]), np.array([1.0, 0.5]))}
    reports = tmp_path / "reports"
    page = write_report(reports, metrics, details, _world(tmp_path), curves)
    text = page.read_text()
    parsed = _Page()
    parsed.feed(text)

    assert len(parsed.sources) == 4 and all(not s.startswith(("/", "file:")) for s in parsed.sources)  # relative
    assert all((reports / urllib.parse.unquote(s)).resolve().is_file() for s in parsed.sources)
    assert len(parsed.images) == 4
    assert all((reports / urllib.parse.unquote(s)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for s in parsed.images)
    assert parsed.cells["fad"] == "3.1416" and parsed.cells["first_seed.ccs_margin"] == "0.1000"
    assert parsed.cells["ceiling.fad"] == "1.5000" and "ceiling.clap" not in parsed.cells
    assert len(parsed.cells) == 13 and parsed.chosen_rows == 2
    table = text.split('<table id="metrics">', 1)[1].split("</table>", 1)[0]
    assert table.count("challenge metric</span>") == 1 and table.count("offline stand-in</span>") == 2
    assert "&lt;p1&gt; &amp; co" in text and "<p1>" not in text  # captions are escaped
    assert "<polyline" in text and "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")

    # unreadable audio: no image, the page still builds
    text = write_report(reports, metrics, details, _world_rows_only(tmp_path), {}).read_text()
    assert "(audio unreadable)" in text and "No training log" in text
    assert not (reports / "spectrograms" / "p1" / "seed-0.png").exists()  # stale images are removed


def _world_rows_only(tmp_path: Path) -> pa.Table:
    table = _world(tmp_path)
    (tmp_path / "generated" / "p1" / "seed-0.wav").unlink()
    return table
