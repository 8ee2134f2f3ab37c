"""The listening report's page without a browser: links resolve, numbers and labels match, chosen seeds marked,
reference clips beside the generated ones, the "Generated beside reference" showcase."""

from __future__ import annotations

import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa

from evaluation.report.page import write_report
from model.audio.io import write_audio


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.images, self.cells, self.chosen_rows = [], [], {}, 0
        self._key = None
        self.groups: dict[str, list[str]] = {}  # tbody data-prompt -> its rows' classes, in order
        self.showcase_images: list[str] = []
        self._table = self._group = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "audio":
            self.sources.append(a["src"])
        elif tag == "img":
            self.images.append(a["src"])
            if self._table == "showcase":
                self.showcase_images.append(a["src"])
        elif tag == "td" and "data-key" in a:
            self._key = a["data-key"]
        elif tag == "table":
            self._table = a.get("id")
        elif tag == "tbody" and "data-prompt" in a:
            self._group = self.groups.setdefault(a["data-prompt"], [])
        elif tag == "tr":
            self.chosen_rows += a.get("class") == "chosen"
            if self._group is not None:
                self._group.append(a.get("class"))
            elif self._table == "showcase" and a.get("class") == "showcase":
                self.groups.setdefault("#showcase", []).append("showcase")

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._group = None

    def handle_data(self, data):
        if self._key is not None:
            self.cells[self._key] = data
            self._key = None


def _world(tmp_path: Path, prompts=("p1", "p2"), references: dict | None = None) -> pa.Table:
    """Two seeds per prompt; ``references``: prompt -> (reference id, overlap) or None, as run_evaluation writes
    the ``reference_*`` columns (None: a table without them)."""
    rows = []
    for p in prompts:
        ref = (references or {}).get(p)
        ref_path = None
        if ref is not None:
            ref_path = tmp_path / "data" / "instrumental" / f"{ref[0]}.wav"
            write_audio(ref_path, np.full((2, 22050), 0.3, np.float32), 44100)
        for seed in (0, 1):
            path = tmp_path / "generated" / p / f"seed-{seed}.wav"
            write_audio(path, np.full((2, 22050), 0.1 * (seed + 1), np.float32), 44100)
            rows.append(
                {
                    "prompt_id": p,
                    "seed": seed,
                    "path": str(path),
                    "caption": f"<{p}> & co",
                    "fad_distance": 1.0 + seed,
                    "text_audio": 0.5,
                    "ccs": 0.5,
                    "concepts_present": ["genre:rock"],
                    "concepts_missing": ["mood:calm"],
                    "chosen": seed == (p == "p2"),
                }
            )
            if references is not None:
                rows[-1].update(
                    reference_id=ref and ref[0],
                    reference_path=ref_path and str(ref_path),
                    reference_overlap=ref and ref[1],
                )
    return pa.Table.from_pylist(rows)


def test_page_links_numbers_and_labels(tmp_path):
    metrics = {
        "fad": 3.14159,
        "clap": 0.25,
        "ccs": 0.5,
        "ccs_margin": 0.125,
        "first_seed": {"fad": 4.0, "clap": 0.2, "ccs": 0.4, "ccs_margin": 0.1},
        "all_seeds": {"fad": 3.5, "clap": 0.22, "ccs": 0.45, "ccs_margin": 0.11},
        "ceiling": {"fad": 1.5},
    }  # a captionless reference set: fad only
    details = {
        "metric_sources": {
            "fad": {"challenge_metric": True, "what": "FAD on LAION-CLAP"},
            "clap": {"challenge_metric": False, "what": "offline stand-in: local model"},
            "ccs": {"challenge_metric": False, "what": "offline stand-in: tagger"},
        }
    }
    curves = {"train/loss": (np.array([10.0, 20.0]), np.array([1.0, 0.5]))}
    reports = tmp_path / "reports"
    page = write_report(reports, metrics, details, _world(tmp_path), curves)
    text = page.read_text()
    parsed = _Page()
    parsed.feed(text)

    assert len(parsed.sources) == 4 and all(
        not s.startswith(("/", "file:")) for s in parsed.sources
    )  # relative
    assert all((reports / urllib.parse.unquote(s)).resolve().is_file() for s in parsed.sources)
    assert len(parsed.images) == 4 + 4  # the clips' rows, then the showcase (same PNGs)
    assert parsed.groups == {
        "p1": ["chosen", "other"],
        "p2": ["other", "chosen"],
        "#showcase": ["showcase"] * 2,
    }
    assert all(
        (reports / urllib.parse.unquote(s)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for s in parsed.images
    )
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


def test_reference_rows_beside_the_generated_clips_and_the_showcase(tmp_path):
    refs = {
        "p1": ("p1", 1.0),
        "p2": ("track_7", 2 / 3),
        "p3": None,
        "p4": ("track_7", 0.5),
        "p5": ("p5", 1.0),
    }
    calls = []

    def roundtrip(audio, sr):  # a stand-in codec: halves the level, counts its calls
        calls.append(audio.shape)
        return audio * 0.5, sr

    reports = tmp_path / "reports"
    page = write_report(
        reports,
        {"fad": 1.0, "clap": 0.1, "ccs": 0.5, "ccs_margin": 0.1},
        {},
        _world(tmp_path, tuple(refs), refs),
        {},
        roundtrip=roundtrip,
    )
    text = page.read_text()
    parsed = _Page()
    parsed.feed(text)

    # a reference row first inside its prompt's tbody (sorting moves it with the prompt); none for p3
    assert parsed.groups["p1"] == ["reference", "chosen", "other"] and parsed.groups["p3"] == [
        "chosen",
        "other",
    ]
    assert "reference: p1 (same track)" in text and "reference: track_7 (tag overlap 0.67)" in text
    assert len(parsed.sources) == 5 * 2 + 4  # every seed, plus the four prompts with a reference
    assert all(
        not s.startswith(("/", "file:")) and (reports / urllib.parse.unquote(s)).resolve().is_file()
        for s in parsed.sources
    )
    assert "../data/instrumental/track_7.wav" in parsed.sources
    assert all(
        (reports / urllib.parse.unquote(s)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for s in parsed.images
    )

    # the showcase: the first four prompts by id, each reference, its codec round trip and both seeds
    assert parsed.groups["#showcase"] == ["showcase"] * 4
    showcase = text.split('<table id="showcase">', 1)[1].split("</table>", 1)[0]
    assert [pid for pid in refs if f"<b>{pid}</b>" in showcase] == ["p1", "p2", "p3", "p4"]
    assert "The first 4 prompts by id" in text and "not picked by score" in text
    assert text.index("Generated beside reference") < text.index('<table id="clips">')
    codec = [s for s in parsed.showcase_images if s.endswith("reference-codec.png")]
    assert codec == [f"spectrograms/{p}/reference-codec.png" for p in ("p1", "p2", "p4")] and len(calls) == 3
    assert len(parsed.showcase_images) == 3 + 3 + 4 * 2  # reference, through the codec, both seeds
    assert "no reference clip shares a tag" in showcase and "seed 1 (chosen)" in showcase
    assert not (reports / "spectrograms" / "p5" / "reference-codec.png").exists()  # only the showcase prompts
    assert (reports / "spectrograms" / "p5" / "reference.png").is_file()

    # without a codec: no third image; with fewer prompts, fewer rows
    text = write_report(reports, {}, {}, _world(tmp_path, ("p2", "p1"), refs), {}).read_text()
    parsed = _Page()
    parsed.feed(text)
    assert parsed.groups["#showcase"] == ["showcase"] * 2 and "reference-codec" not in text
    assert "through the model's codec" not in text and "The first 2 prompts by id" in text
    assert text.index("<b>p1</b>", text.index('id="showcase"')) < text.index(
        "<b>p2</b>", text.index('id="showcase"')
    )


def test_out_of_distribution_prompts_are_marked_and_their_set_shown(tmp_path):
    table = _world(tmp_path).to_pylist()
    for row in table:
        row["split"] = "ood" if row["prompt_id"] == "p2" else "ranked"
    metrics = {"fad": 3.0, "clap": 0.2, "ccs": 0.5, "ccs_margin": 0.1, "ood": {"clap": 0.3, "ccs": 0.25}}
    text = write_report(tmp_path / "reports", metrics, {}, pa.Table.from_pylist(table), {}).read_text()
    parsed = _Page()
    parsed.feed(text)
    assert parsed.cells["ood.clap"] == "0.3000" and "ood.fad" not in parsed.cells  # too few windows: no FAD
    assert "out-of-distribution prompts" in text.split('<table id="metrics">', 1)[1].split("</table>", 1)[0]
    p1, p2 = (text.split(f'data-prompt="{p}"', 1)[1].split("</tbody>", 1)[0] for p in ("p1", "p2"))
    assert "out of distribution" in p2 and "out of distribution" not in p1
