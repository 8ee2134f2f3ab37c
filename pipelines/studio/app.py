"""The studio's page (Gradio Blocks): caption, sampler settings, seed, variations; generate, continue, inpaint;
per take an audio player, a spectrogram, a download and the exact settings with the equivalent command line.

Every render goes through one queue (``concurrency_id="render"``, at most ``Limits.concurrency`` at once, at most
``Limits.queue_size`` waiting). A refused request (bad upload, over a limit, bad settings) ends as a message in the
page (``gr.Error``), never a traceback; an unexpected failure says to look at the server's log.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from model.flow.render import Edit
from model.flow.sampling import METHODS
from model.runtime.errors import InputError
from pipelines.generate import MIN_SECONDS
from pipelines.studio.service import Studio, StudioError, Take
from pipelines.studio.uploads import FORMATS, check_upload

log = logging.getLogger(__name__)

TITLE = "flowjam studio"
MAX_SEED = 2**31 - 1
EARLIER_KEPT = 30  # takes offered for continuation/inpainting, newest first


def guarded(fn: Callable[..., Any], n_outputs: int) -> Callable[..., Any]:
    """Run a handler whose first output is the status line. A user's mistake becomes a message there (and a
    toast) and leaves the takes on the page as they were; anything else points to the server's log."""

    @functools.wraps(fn)  # gradio reads the signature (its gr.Progress parameter) through __wrapped__
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            message = f"Cannot render this: {exc}"
        except Exception as exc:
            log.exception("render failed")
            message = f"Render failed on the server ({type(exc).__name__}); the server's log has the details."
        gr.Warning(message, duration=None)
        return (f"**{message}**", *[gr.skip()] * (n_outputs - 1))

    return run


def pick_seed(mode: str, seed: Any) -> int:
    if mode == "random":
        return secrets.randbelow(MAX_SEED + 1)
    try:
        value = int(seed)
    except (TypeError, ValueError):
        raise StudioError(f"the seed must be a whole number from 0 to {MAX_SEED}, not {seed!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise StudioError(f"the seed must be a whole number from 0 to {MAX_SEED}, not {value}")
    return value


def build_app(studio: Studio) -> gr.Blocks:
    """The page; ``studio`` does the work (``pipelines/studio/service.py``)."""
    base, limits = studio.base, studio.limits
    n_slots = limits.max_variations
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        takes_state = gr.State([])  # [[name, wav path], ...] of this session, newest first
        gr.Markdown(
            f"# {TITLE}\nText to music with a trained flowjam model. Settings below are the "
            "`python -m pipelines.generate` options; every take shows the command that renders it again."
        )
        model = gr.Dropdown(
            [(c.describe(), c.key) for c in studio.choices.values()],
            value=next(iter(studio.choices)),
            label="Model (headline metrics of its evaluation: FAD lower is better, CLAP and CCS higher)",
            elem_id="model",
        )
        caption = gr.Textbox(
            label="Caption", lines=2, placeholder="calm piano ballad with soft strings", elem_id="caption"
        )
        with gr.Row():
            method = gr.Dropdown(list(METHODS), value=base.method, label="Solver", elem_id="method")
            steps = gr.Slider(1, 200, value=base.steps, step=1, label="Steps", elem_id="steps")
            cfg = gr.Slider(0.0, 10.0, value=base.cfg_scale, step=0.05, label="CFG scale", elem_id="cfg")
        with gr.Row():
            seed_mode = gr.Radio(["random", "fixed"], value="random", label="Seed", elem_id="seed-mode")
            seed = gr.Number(
                value=base.seed, precision=0, label="Seed (fixed; shows the last used)", elem_id="seed"
            )
            variations = gr.Slider(
                1, n_slots, value=1, step=1, label="Variations (seed, seed + 1, ...)", elem_id="variations"
            )
        with gr.Tabs():
            with gr.Tab("Generate"):
                seconds = gr.Slider(
                    MIN_SECONDS,
                    limits.max_seconds,
                    value=min(max(base.seconds, MIN_SECONDS), limits.max_seconds),
                    step=0.5,
                    label="Duration (s)",
                    elem_id="seconds",
                )
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Tab("Continue / inpaint", elem_id="edit-tab"):
                earlier = gr.Dropdown([], value=None, label="An earlier take", elem_id="earlier")
                upload = gr.File(
                    label=f"…or upload audio ({', '.join(f.lstrip('.').upper() for f in FORMATS)}; "
                    f"1 s to {limits.max_seconds:g} s, 8–192 kHz)",
                    file_types=list(FORMATS),
                    type="filepath",
                    elem_id="upload",
                )
                with gr.Row():
                    crossfade = gr.Slider(
                        0.0, 2.0, value=0.25, step=0.05, label="Crossfade (s)", elem_id="crossfade"
                    )
                    repeats = gr.Slider(
                        1, 8, value=1, step=1, label="Repeats (solver passes per step)", elem_id="repeats"
                    )
                with gr.Row():
                    add = gr.Slider(
                        1.0, limits.max_seconds, value=10.0, step=0.5, label="Seconds to add", elem_id="add"
                    )
                    cont = gr.Button("Continue", variant="primary", elem_id="continue")
                with gr.Row():
                    start = gr.Number(value=4.0, label="Redo from (s)", elem_id="start")
                    end = gr.Number(value=6.5, label="to (s)", elem_id="end")
                    inpaint = gr.Button("Inpaint", variant="primary", elem_id="inpaint")
        status = gr.Markdown(elem_id="status")
        slots: list[Any] = []  # per take: its panel, audio, spectrogram, download, settings
        for k in range(n_slots):
            with gr.Column(variant="panel", visible=k == 0, elem_id=f"take-{k}") as panel:
                slots += [
                    panel,
                    gr.Audio(
                        label=f"Take {k + 1}",
                        type="filepath",
                        interactive=False,
                        waveform_options=gr.WaveformOptions(show_recording_waveform=False),
                        elem_id=f"take-{k}-audio",
                    ),
                    gr.Image(
                        label="Spectrogram (30 columns per second, low frequencies at the bottom)",
                        type="filepath",
                        interactive=False,
                        height=200,
                        elem_id=f"take-{k}-spectrogram",
                    ),
                    gr.File(label="Download (WAV)", interactive=False, elem_id=f"take-{k}-download"),
                    gr.Markdown(elem_id=f"take-{k}-settings"),
                ]

        def shown(takes: list[Take], seed_used: int, history: list[list[str]]) -> tuple:
            history = ([[t.name(), str(t.wav)] for t in reversed(takes)] + history)[:EARLIER_KEPT]
            per_slot: list[Any] = []
            for k in range(n_slots):
                t = takes[k] if k < len(takes) else None
                per_slot += [
                    gr.update(visible=t is not None),
                    str(t.wav) if t else None,
                    str(t.spectrogram) if t else None,
                    str(t.wav) if t else None,
                    t.summary() if t else "",
                ]
            done = f"{len(takes)} take{'s' * (len(takes) > 1)} rendered ({takes[0].model_label})."
            choices = [(name, path) for name, path in history]
            return (done, seed_used, gr.update(choices=choices, value=history[0][1]), history, *per_slot)

        def source_of(
            upload: str | None, picked: str | None, history: list[list[str]]
        ) -> tuple[str, str, float]:
            if upload:
                info = check_upload(upload, limits.max_seconds)
                return upload, f"the upload {Path(upload).name}", info.frames / info.sample_rate
            names = {path: name for name, path in history}
            if picked:
                if picked not in names:
                    raise StudioError(
                        "that take is not from this session; pick one from the list or upload audio"
                    )
                info = check_upload(picked, limits.max_seconds)
                return picked, names[picked].split(":")[0], info.frames / info.sample_rate
            raise StudioError("pick an earlier take or upload audio to continue or inpaint")

        def run_generate(
            key,
            text,
            solver,
            n_steps,
            scale,
            mode,
            seed_value,
            n,
            secs,
            history,
            progress=gr.Progress(),  # noqa: B008 (gradio finds its progress bar by this default)
        ):
            used = pick_seed(mode, seed_value)
            settings = studio.settings(float(secs), n_steps, scale, solver)
            takes = studio.render(key, text, settings, used, int(n), progress=_bar(progress))
            return shown(takes, used, history)

        def run_continue(
            key,
            text,
            solver,
            n_steps,
            scale,
            mode,
            seed_value,
            n,
            picked,
            up,
            fade,
            passes,
            extra,
            history,
            progress=gr.Progress(),  # noqa: B008 (gradio finds its progress bar by this default)
        ):
            source, label, duration = source_of(up, picked, history)
            used = pick_seed(mode, seed_value)
            settings = studio.settings(duration + float(extra), n_steps, scale, solver)
            edit = Edit("continue", source, None, int(passes), float(fade), label)
            takes = studio.render(key, text, settings, used, int(n), edit, _bar(progress))
            return shown(takes, used, history)

        def run_inpaint(
            key,
            text,
            solver,
            n_steps,
            scale,
            mode,
            seed_value,
            n,
            picked,
            up,
            fade,
            passes,
            a,
            b,
            history,
            progress=gr.Progress(),  # noqa: B008 (gradio finds its progress bar by this default)
        ):
            source, label, duration = source_of(up, picked, history)
            used = pick_seed(mode, seed_value)
            settings = studio.settings(max(duration, MIN_SECONDS), n_steps, scale, solver)
            edit = Edit("inpaint", source, (float(a), float(b)), int(passes), float(fade), label)
            takes = studio.render(key, text, settings, used, int(n), edit, _bar(progress))
            return shown(takes, used, history)

        common = [model, caption, method, steps, cfg, seed_mode, seed, variations]
        outputs = [status, seed, earlier, takes_state, *slots]
        edit_in = [earlier, upload, crossfade, repeats]
        for button, fn, extra_in, name in (
            (generate, run_generate, [seconds], "generate"),
            (cont, run_continue, [*edit_in, add], "continue"),
            (inpaint, run_inpaint, [*edit_in, start, end], "inpaint"),
        ):
            button.click(
                guarded(fn, len(outputs)),
                [*common, *extra_in, takes_state],
                outputs,
                api_name=name,
                concurrency_id="render",
                concurrency_limit=limits.concurrency,
            )
    return demo


def _bar(progress: gr.Progress) -> Callable[[int, int, str], None]:
    def report(done: int, total: int, desc: str) -> None:
        progress((done, total), desc=desc, unit="steps")

    return report
