"""`python -m pipelines.summary`: what a run produced, and what is missing."""

from __future__ import annotations

import json
import zipfile

from pipelines.summary import main, summary_lines
from tests import defaults


def test_summary_names_outputs_and_the_report(tmp_path, capsys):
    params = {
        "train": {"out_dir": str(tmp_path / "models/final")},
        "generate": {"out_dir": str(tmp_path / "gen")},
        "evaluate": {"out_dir": str(tmp_path / "reports")},
        "submit": {"out_dir": str(tmp_path / "sub")},
    }
    lines = summary_lines(defaults.params(params))
    assert all("missing" in line or "no clips" in line for line in lines[1:])

    (tmp_path / "models/final").mkdir(parents=True)
    (tmp_path / "models/final/config.json").write_text("{}")
    for pid in ("p1", "p2"):
        (tmp_path / "gen" / pid).mkdir(parents=True)
        (tmp_path / "gen" / pid / "seed-0.wav").write_bytes(b"RIFF")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/metrics.json").write_text(json.dumps({"fad": 12.5, "clap": 0.25, "ccs": 0.5}))
    (tmp_path / "reports/details.json").write_text(
        json.dumps({"metric_sources": {"fad": {"challenge_metric": False}}})
    )
    (tmp_path / "reports/index.html").write_text("<html></html>")
    (tmp_path / "sub").mkdir()
    with zipfile.ZipFile(tmp_path / "sub/flowjam_efficiency_1.zip", "w") as zf:
        zf.writestr("p1.wav", b"RIFF")
    text = "\n".join(summary_lines(defaults.params(params)))
    assert "flowjam_efficiency_1.zip: 1 WAV files" in text
    assert "2 clips for 2 prompts" in text and "FAD 12.5" in text and "offline stand-ins" in text
    assert (tmp_path / "reports/index.html").resolve().as_uri() in text and "missing" not in text

    (tmp_path / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
    main(["--params", str(tmp_path / "params.yaml")])
    assert "file://" in capsys.readouterr().out
