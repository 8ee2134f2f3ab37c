"""What the studio's page asks for, without the page: render takes through ``model.flow.render`` (the command
line's own path), write each take's WAV and spectrogram, and say how to reproduce it from the command line.

A take is one clip: caption + settings + seed (variation k of a request uses seed + k). Engines are built by
``pipelines.generate.load_engine`` and kept per model (the last ``MAX_ENGINES`` used).
"""

from __future__ import annotations

import itertools
import logging
import shlex
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.report.figures import HOP, N_FFT, colourise, png_bytes, spectrogram_image
from model.audio.io import write_audio
from model.flow.render import Edit, RenderRequest, check_request, render
from model.flow.text_to_music import OUTPUT_SAMPLE_RATE, TextToMusic
from model.runtime.atomic_io import atomic_path
from model.runtime.errors import InputError
from pipelines.common.schema import GenerateSection
from pipelines.generate import load_engine, sampler_of, with_overrides
from pipelines.studio.models import ModelChoice, materialise

log = logging.getLogger(__name__)

MAX_ENGINES = 2
KEPT_RGB, NEW_RGB, EDGE_RGB = (64, 200, 255), (40, 40, 40), (255, 255, 255)
BAND_ROWS = 10  # the bar above a spectrogram that marks the kept (blue) and the generated (dark) spans

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what is running)


class StudioError(InputError, ValueError):
    """A request the studio refuses (over a limit, no such model); the page shows the message."""


@dataclass(frozen=True)
class Limits:
    """``max_seconds``: the longest clip a request may ask for; ``max_variations`` takes per request;
    ``concurrency`` renders at once; ``queue_size`` requests waiting at most."""

    max_seconds: float
    max_variations: int
    concurrency: int
    queue_size: int


@dataclass(frozen=True)
class Take:
    """One rendered clip: its files, the request it answers and the command line that renders it again."""

    number: int
    wav: Path
    spectrogram: Path
    request: RenderRequest
    model_label: str
    command: str
    seconds: float

    def name(self) -> str:
        return f"take {self.number}: {self.request.caption[:40]} (seed {self.request.seed}, {self.seconds:.1f} s)"

    def summary(self) -> str:
        """Markdown: the exact settings and the equivalent command line."""
        r, s = self.request, self.request.sampler
        what = "text to music"
        if r.edit is not None and r.edit.kind == "continue":
            what = f"continuation of {r.edit.label} to {r.seconds:g} s"
        elif r.edit is not None and r.edit.region is not None:
            what = f"inpainting {r.edit.region[0]:g}–{r.edit.region[1]:g} s of {r.edit.label}"
        if r.edit is not None:
            what += f" (crossfade {r.edit.crossfade_s:g} s, repeats {r.edit.repeats}; blue bar: kept audio)"
        return (
            f"**Take {self.number}** · {what} · {self.seconds:.2f} s · seed {r.seed} · {s.method} {s.steps} "
            f"steps · CFG {s.cfg_scale:g} · model {self.model_label}\n\n```bash\n{self.command}\n```"
        )


def cli_command(
    request: RenderRequest, model_dir: Path, device: str, output: str, threads: int | None = None
) -> str:
    """The ``python -m pipelines.generate`` line that renders ``request`` to the same audio; with ``threads`` (the
    studio's CPU threads per render, when it set them) prefixed by ``OMP_NUM_THREADS``: float rounding depends on
    the thread count."""
    s, edit = request.sampler, request.edit
    argv = [] if threads is None else [f"OMP_NUM_THREADS={threads}"]
    argv += ["python", "-m", "pipelines.generate", request.caption]
    if edit is not None:
        argv += [f"--{edit.kind}", edit.source]
        if edit.region is not None:
            argv += ["--region", f"{edit.region[0]!r}:{edit.region[1]!r}"]
        argv += ["--repeats", str(edit.repeats), "--crossfade", repr(edit.crossfade_s)]
    if edit is None or edit.kind == "continue":
        argv += ["--seconds", repr(float(request.seconds))]
    argv += ["--steps", str(s.steps), "--cfg", repr(float(s.cfg_scale)), "--method", s.method]
    argv += ["--seed", str(request.seed), "--model-dir", str(model_dir), "--device", device, "-o", output]
    return shlex.join(argv)


def spectrogram_rgb(audio: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the log-mel spectrogram of the whole clip (2, N); when only part of it was generated, a
    bar on top marks the kept (blue) and generated (dark) spans and white lines mark the boundaries."""
    image = spectrogram_image(audio, OUTPUT_SAMPLE_RATE, seconds=audio.shape[-1] / OUTPUT_SAMPLE_RATE)
    rgb = np.repeat(colourise(image), 2, axis=0)  # 2 px per mel band: easier to read
    if generated.all():
        return rgb
    width = rgb.shape[1]
    centre = np.minimum(np.arange(width) * HOP + N_FFT // 2, generated.shape[0] - 1)
    kept = ~generated[centre]
    band = np.where(kept[None, :, None], np.array(KEPT_RGB, np.uint8), np.array(NEW_RGB, np.uint8))
    out = np.concatenate([np.repeat(band, BAND_ROWS, axis=0), rgb], axis=0)
    edges = np.flatnonzero(kept[1:] != kept[:-1]) + 1
    out[:, edges] = np.array(EDGE_RGB, np.uint8)
    return out


class Studio:
    """The render service behind the page: models, limits, output folder and the take counter; ``threads`` is
    the CPU threads per render when the studio set them (shown in the command lines)."""

    def __init__(
        self,
        base: GenerateSection,
        choices: list[ModelChoice],
        limits: Limits,
        out_dir: Path,
        threads: int | None = None,
    ):
        self.base = base
        self.threads = threads
        self.choices = {c.key: c for c in choices}
        self.limits = limits
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._engines: OrderedDict[str, TextToMusic] = OrderedDict()
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    def model_dir(self, key: str) -> Path:
        if key not in self.choices:
            raise StudioError(f"no model {key!r} in the picker; reload the page")
        return materialise(self.choices[key], self.out_dir / "models")

    def engine(self, key: str) -> TextToMusic:
        """The engine of picker entry ``key``, loaded on first use (the least recently used one is dropped)."""
        with self._lock:  # one load at a time; renders on loaded engines go on meanwhile
            if key in self._engines:
                self._engines.move_to_end(key)
                return self._engines[key]
            engine = load_engine(self.model_dir(key), self.base)
            self._engines[key] = engine
            while len(self._engines) > MAX_ENGINES:
                self._engines.popitem(last=False)
            return engine

    def settings(self, seconds: float, steps: int, cfg: float, method: str) -> GenerateSection:
        """``generate.*`` with the page's values, checked by the params schema and the studio's limits."""
        if seconds > self.limits.max_seconds + 1e-9:
            raise StudioError(
                f"{seconds:g} s is longer than this studio renders per clip ({self.limits.max_seconds:g} s, "
                "--max-seconds); ask for less or restart the studio with a larger --max-seconds"
            )
        settings = with_overrides(
            self.base, seconds=seconds, steps=int(steps), cfg_scale=float(cfg), method=method
        )
        sampler_of(settings)  # refuses an unknown method
        return settings

    def render(
        self,
        model_key: str,
        caption: str,
        settings: GenerateSection,
        seed: int,
        variations: int,
        edit: Edit | None = None,
        progress: Progress | None = None,
    ) -> list[Take]:
        """``variations`` takes of ``caption`` (seeds seed, seed + 1, ...), each written to the output folder."""
        if not 1 <= variations <= self.limits.max_variations:
            raise StudioError(f"ask for 1 to {self.limits.max_variations} variations, not {variations}")
        sampler = sampler_of(settings)
        requests = [
            RenderRequest(caption, settings.seconds, sampler, seed + k, edit) for k in range(variations)
        ]
        check_request(requests[0])  # refuse before loading a model
        total, done = variations * sampler.steps, 0
        report = progress or (lambda *_: None)
        report(0, total, "loading the model")
        engine = self.engine(model_key)
        model_dir, label = self.model_dir(model_key), self.choices[model_key].label
        takes = []
        for k, request in enumerate(requests):
            desc = f"take {k + 1} of {variations}: sampling"

            def step(n: int = 1, _desc: str = desc) -> None:
                nonlocal done
                done += n
                report(done, total, _desc)

            result = render(engine, request, progress=step)
            number = next(self._numbers)
            wav = self.out_dir / f"take-{number:04d}-seed-{request.seed}.wav"
            write_audio(wav, result.audio, OUTPUT_SAMPLE_RATE)
            png = wav.with_suffix(".png")
            with atomic_path(png) as tmp:
                tmp.write_bytes(png_bytes(spectrogram_rgb(result.audio, result.generated)))
            command = cli_command(request, model_dir, str(engine.device), wav.name, self.threads)
            takes.append(Take(number, wav, png, request, label, command, result.seconds))
            log.info("take %d: %s", number, command)
        return takes
