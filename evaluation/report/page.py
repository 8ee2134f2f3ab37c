"""The listening report ``<evaluate.out_dir>/index.html``: one static page, opened from the file system.

``write_report(out_dir, metrics, details, per_clip, curves, roundtrip=None)`` writes ``index.html`` and one
spectrogram PNG per clip (``spectrograms/<prompt_id>/seed-<k>.png``) and per prompt with a reference clip
(``spectrograms/<prompt_id>/reference.png``; the per-clip table's ``reference_*`` columns). The page holds, top to
bottom: the headline metrics (chosen seed per prompt, first seed, all seeds) each labelled as the challenge's metric
or an offline stand-in; the training loss curves (inline SVG); "Generated beside reference": the first
``SHOWCASE`` prompts by id, each with the reference's spectrogram, with ``roundtrip`` (the model's codec) the
reference through that codec (``reference-codec.png``), and the seeds' spectrograms; then one group of rows per
prompt: caption, concepts (which ones the judge heard, per clip), the reference clip's player and spectrogram, an
audio player per seed with the chosen seed marked, its spectrogram and its scores. Audio is linked by a relative
path into the generated and reference folders (no copies, no server, no network); a few lines of inline script
sort the prompts.
"""

from __future__ import annotations

import html
import logging
import os
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from evaluation.report.figures import svg_line_plot
from evaluation.report.spectrograms import (
    RoundTrip,
    references,
    showcase_prompts,
    write_reference_spectrograms,
    write_spectrograms,
)
from model.runtime.atomic_io import atomic_path

log = logging.getLogger(__name__)

SETS = (
    ("", "chosen seed per ranked prompt (headline, submitted)"),
    ("first_seed", "first seed (ranked prompts)"),
    ("all_seeds", "all seeds pooled (ranked prompts)"),
    ("ood", "out-of-distribution prompts (chosen seed; observed, not ranked)"),
    ("ceiling", "codec ceiling (reference audio through the model's codec)"),
)
ROWS = (
    ("fad", "FAD", "lower is better"),
    ("clap", "CLAP score", "higher is better"),
    ("ccs", "CCS", "higher is better"),
    ("ccs_margin", "CCS margin", "CCS minus CCS against shuffled prompts"),
)
CLIP_SCORES = (
    ("fad_distance", "FAD distance", "lower: closer to the reference set"),
    ("text_audio", "CLAP", "text-audio cosine with its caption"),
    ("ccs", "CCS", "share of the prompt's concepts the judge heard"),
)
# the page's styling and its sort function live beside this module, inlined into the page when it is written
STYLE_FILE = Path(__file__).with_name("report.css")
SCRIPT_FILE = Path(__file__).with_name("sort.js")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and np.isfinite(value) else html.escape(str(value))


def _relative_url(path: str, out_dir: Path) -> str:
    return urllib.parse.quote(Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix())


def _metric_table(metrics: dict[str, Any], details: dict[str, Any]) -> str:
    present = [(key, title) for key, title in SETS if key == "" or key in metrics]
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in present)
    rows = []
    for name, label, hint in ROWS:
        cells = []
        for key, _ in present:
            block = metrics if key == "" else metrics[key]
            data_key = name if key == "" else f"{key}.{name}"
            cells.append(
                f'<td class="num" data-key="{data_key}">{_fmt(block[name])}</td>'
                if name in block
                else '<td class="num">&ndash;</td>'
            )
        source = details.get("metric_sources", {}).get(name)
        if source is None:
            kind = '<span class="standin">diagnostic</span> (not a challenge metric)'
        elif source["challenge_metric"]:
            kind = f'<span class="challenge">challenge metric</span>: {html.escape(source["what"])}'
        else:
            kind = f'<span class="standin">offline stand-in</span>: {html.escape(source["what"].split(": ", 1)[-1])}'
        rows.append(f'<tr><th title="{html.escape(hint)}">{label}</th>{"".join(cells)}<td>{kind}</td></tr>')
    return (
        f'<table id="metrics"><thead><tr><th>metric</th>{head}<th>what it is</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _provenance(details: dict[str, Any]) -> str:
    items = [
        ("headline", details.get("headline", "")),
        ("best-seed rule", details.get("best_seed_rule", "")),
        ("FAD embedder", details.get("embedder", "")),
        ("text-audio model", details.get("text_audio_model", "")),
        ("CCS judge", details.get("judge", "")),
        ("reference set", details.get("reference", {}).get("source", "")),
        ("prompts / seeds", f"{details.get('n_prompts', '?')} / {len(details.get('seeds', []))}"),
    ]
    return "<ul>" + "".join(f"<li><b>{k}</b>: {html.escape(str(v))}</li>" for k, v in items) + "</ul>"


def _concept_chips(present: list[str], missing: list[str]) -> str:
    chips = [(c, "heard") for c in present] + [(c, "missed") for c in missing]
    chips.sort(key=lambda t: t[0])
    return "".join(
        f'<span class="{kind}" title="judge: {"heard" if kind == "heard" else "not heard"}">'
        f"{html.escape(c)}</span>"
        for c, kind in chips
    )


def _reference_label(pid: str, ref: dict[str, Any]) -> str:
    how = "same track" if ref["id"] == pid else f"tag overlap {ref['overlap']:.2f}"
    return f"reference: {html.escape(ref['id'])} ({how})"


def _spec_img(src: str | None, alt: str) -> str:
    """A spectrogram ``<img>`` (``src`` relative to the page), or a note when the audio was unreadable."""
    return (
        f'<img class="spec" alt="{html.escape(alt)}" src="{urllib.parse.quote(src)}">'
        if src
        else "(audio unreadable)"
    )


def _figure(src: str | None, alt: str, caption: str) -> str:
    return f"<figure>{_spec_img(src, alt)}<figcaption>{caption}</figcaption></figure>"


def _split_note(clip: dict[str, Any]) -> str:
    """A marker for an out-of-distribution prompt (scored in ``ood.*``, not in the headline)."""
    return (
        ' <span class="standin">out of distribution (not ranked)</span>' if clip.get("split") == "ood" else ""
    )


def _prompt_cell(pid: str, clip: dict[str, Any], rowspan: int = 1) -> str:
    """Prompt id, caption and concepts (from any of its clips' rows)."""
    concepts = sorted({*clip["concepts_present"], *clip["concepts_missing"]})
    span = f' rowspan="{rowspan}"' if rowspan > 1 else ""
    return (
        f'<td class="promptcell"{span}><b>{html.escape(pid)}</b>{_split_note(clip)}<br><span class="caption">'
        f"{html.escape(clip['caption'])}</span><br>concepts: {html.escape(', '.join(concepts) or 'none')}</td>"
    )


def _showcase(
    rows: list[dict[str, Any]],
    refs: dict[str, dict[str, Any]],
    ref_images: dict[str, str],
    codec_images: dict[str, str] | None,
    spectrograms: dict[tuple[str, int], str],
) -> str:
    """The "Generated beside reference" text and table: one row per showcase prompt; ``codec_images`` None = no
    codec given."""
    out, shown = [], showcase_prompts(rows)
    for pid in shown:
        clips = sorted(
            (r for r in rows if r["prompt_id"] == pid), key=lambda r: (not r["chosen"], int(r["seed"]))
        )
        cells = [_prompt_cell(pid, clips[0])]
        ref = refs.get(pid)
        if ref is None:
            cells.append("<td>no reference clip shares a tag with this prompt</td>")
            cells += ["<td>&ndash;</td>"] if codec_images is not None else []
        else:
            label = _reference_label(pid, ref)
            cells.append(f"<td>{_figure(ref_images.get(pid), f'spectrogram of {pid} reference', label)}</td>")
            if codec_images is not None:
                alt = f"spectrogram of {pid} reference through the codec"
                cells.append(f"<td>{_figure(codec_images.get(pid), alt, label + ' through the codec')}</td>")
        figures = [
            _figure(
                spectrograms.get((pid, int(r["seed"]))),
                f"spectrogram of {pid} seed {int(r['seed'])}",
                f"seed {int(r['seed'])}" + (" (chosen)" if r["chosen"] else ""),
            )
            for r in clips
        ]
        cells.append(f"<td>{figures[0]}</td><td>{''.join(figures[1:]) or '&ndash;'}</td>")
        out.append(f'<tr class="showcase">{"".join(cells)}</tr>')
    codec_head = (
        "<th>reference through the model's codec (this very clip after the codec: "
        "the codec ceiling's audio)</th>"
        if codec_images is not None
        else ""
    )
    intro = (
        f"<p>The first {len(shown)} prompts by id (the order of the Prompts table below; not picked by score): "
        "the reference clip for the same tags (the prompt's own track when it is in the reference set, else the "
        "reference clip sharing the most tags: Jaccard overlap of category:name pairs)"
        + (", that reference through the model's codec" if codec_images is not None else "")
        + " and the generated seeds, chosen seed first. Listen to them in the Prompts table.</p>"
    )
    return (
        f'{intro}<table id="showcase"><thead><tr><th>prompt</th><th>reference</th>{codec_head}'
        f"<th>chosen seed</th><th>other seeds</th></tr></thead><tbody>{''.join(out)}</tbody></table>"
    )


def _spec_cell(src: str | None, alt: str) -> str:
    return f"<td>{_spec_img(src, alt)}</td>"


def _audio_cell(path: str, out_dir: Path) -> str:
    return f'<td><audio controls preload="metadata" src="{_relative_url(path, out_dir)}"></audio></td>'


def _clip_groups(
    rows: list[dict[str, Any]],
    out_dir: Path,
    spectrograms: dict[tuple[str, int], str],
    refs: dict[str, dict[str, Any]],
    ref_images: dict[str, str],
) -> str:
    """One ``tbody`` per prompt (the sort script moves whole groups): its reference row, then one row per seed."""
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    groups = []
    for pid, clips in by_prompt.items():
        clips.sort(key=lambda r: int(r["seed"]))
        chosen = next((r for r in clips if r["chosen"]), clips[0])
        data = " ".join(f'data-{k.replace("_", "")}="{float(chosen[k]):.6g}"' for k, _, _ in CLIP_SCORES)
        ref = refs.get(pid)
        out = [f'<tbody class="prompt" data-prompt="{html.escape(pid)}" {data}>']
        prompt_cell = _prompt_cell(pid, clips[0], rowspan=len(clips) + (ref is not None))
        if ref is not None:
            cells = [
                prompt_cell,
                f"<td>{_reference_label(pid, ref)}</td>",
                _audio_cell(ref["path"], out_dir),
                _spec_cell(ref_images.get(pid), f"spectrogram of {pid} reference"),
            ]
            cells += ['<td class="num"></td>'] * len(CLIP_SCORES) + ["<td></td>"]
            out.append(f'<tr class="reference">{"".join(cells)}</tr>')
        for i, r in enumerate(clips):
            cells = [prompt_cell] if i == 0 and ref is None else []
            mark = ' <span class="badge">chosen</span>' if r["chosen"] else ""
            cells.append(f"<td>seed {int(r['seed'])}{mark}</td>")
            cells.append(_audio_cell(r["path"], out_dir))
            cells.append(
                _spec_cell(
                    spectrograms.get((pid, int(r["seed"]))), f"spectrogram of {pid} seed {int(r['seed'])}"
                )
            )
            cells += [f'<td class="num">{float(r[k]):.4g}</td>' for k, _, _ in CLIP_SCORES]
            cells.append(f"<td>{_concept_chips(r['concepts_present'], r['concepts_missing'])}</td>")
            out.append(f'<tr class="{"chosen" if r["chosen"] else "other"}">{"".join(cells)}</tr>')
        groups.append("".join(out) + "</tbody>")
    return "".join(groups)


def render_html(
    metrics: dict[str, Any],
    details: dict[str, Any],
    rows: list[dict[str, Any]],
    out_dir: Path,
    spectrograms: dict[tuple[str, int], str],
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    ref_images: dict[str, str] | None = None,
    codec_images: dict[str, str] | None = None,
) -> str:
    """The page as a string (see the module docstring); ``rows`` are the per-clip table's rows; ``ref_images`` /
    ``codec_images``: prompt_id -> reference spectrogram (through the codec; None = no codec given)."""
    refs, ref_images = references(rows), ref_images or {}
    loss = (
        svg_line_plot(curves)
        or "<p>No training log (DVCLive <code>plots/metrics/*loss*.tsv</code>) found.</p>"
    )
    heads = "".join(f'<th title="{html.escape(h)}">{html.escape(t)}</th>' for _, t, h in CLIP_SCORES)
    sort_buttons = "".join(
        f"<button onclick=\"sortPrompts('{k.replace('_', '')}', {str(desc).lower()})\">{t} {arrow}</button>"
        for k, t, desc, arrow in (
            ("fad_distance", "FAD distance", False, "&uarr;"),
            ("text_audio", "CLAP", True, "&darr;"),
            ("ccs", "CCS", True, "&darr;"),
            ("prompt", "prompt id", False, ""),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>flowjam listening report</title><style>{STYLE_FILE.read_text()}</style></head>
<body>
<h1>flowjam listening report</h1>
<h2>Headline metrics</h2>
{_metric_table(metrics, details)}
<p>The headline scores one clip per prompt, the chosen seed: what is submitted and what the challenge scores.
Numbers labelled <span class="standin">offline stand-in</span> come from weight-free or locally trained models and
are not comparable to the challenge's figures.</p>
{_provenance(details)}
<h2>Training loss</h2>
{loss}
<h2>Generated beside reference</h2>
{_showcase(rows, refs, ref_images, codec_images, spectrograms)}
<h2>Prompts</h2>
<p>Sort prompts by the chosen clip's {sort_buttons}. Concepts: <span class="heard">heard</span> /
<span class="missed">not heard</span> by the CCS judge. Spectrograms: log-mel, first 10 s, 80 dB range. The
blue row of a prompt is its reference clip (no scores); prompts without one have no such row.</p>
<table id="clips"><thead><tr><th>prompt</th><th>seed</th><th>audio</th><th>spectrogram</th>{heads}
<th>concepts (judge)</th></tr></thead>
{_clip_groups(rows, out_dir, spectrograms, refs, ref_images)}
</table>
<script>{SCRIPT_FILE.read_text()}</script>
</body></html>
"""


def write_report(
    out_dir: str | os.PathLike,
    metrics: dict[str, Any],
    details: dict[str, Any],
    per_clip: pa.Table,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    roundtrip: RoundTrip | None = None,
) -> Path:
    """Write ``out_dir/index.html`` and its spectrograms; returns the page's path. ``roundtrip`` (audio, sr) ->
    (audio, sr), the model's codec, adds the showcase prompts' references through that codec."""
    out = Path(out_dir)
    rows = per_clip.to_pylist()
    spectrograms = write_spectrograms(rows, out)
    ref_images, codec_images = write_reference_spectrograms(
        references(rows), out, showcase_prompts(rows), roundtrip
    )
    page = out / "index.html"
    with atomic_path(page) as tmp:
        Path(tmp).write_text(
            render_html(
                metrics,
                details,
                rows,
                out,
                spectrograms,
                curves,
                ref_images,
                codec_images if roundtrip is not None else None,
            ),
            encoding="utf-8",
        )
    log.info("listening report: %s (%d clips)", page, len(rows))
    return page
