"""The separate stage's work: every prepared track -> an instrumental file, or a reject with its reason.

Resumable: outputs are written atomically, so an existing ``audio/<track_id>.<fmt>`` is complete and is not
redone. Parallel: one Ray actor per GPU (when present) or per CPU, each holding one demucs model; the ``none``
model only validates (fully decodes) each input, in a thread pool. With a Ray cluster (``ray.address`` or
``RAY_ADDRESS``) the actors ask the cluster for one GPU (or CPU) each, get absolute paths, and write into
``separate.out_dir``, which must then be a directory every node mounts (checked before any work).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from model.audio.io import AudioDecodeError, audio_info
from model.audio.stream import scan_audio
from model.runtime.atomic_io import write_json_atomic
from model.runtime.ray_session import (
    available_cpus,
    check_reachable,
    cluster_cpus,
    cluster_gpus,
    cuda_device_count,
    ray_session,
    resolve_address,
)
from model.separation.vocal_remover import SeparationConfig, VocalRemover

log = logging.getLogger(__name__)

STATUS_SEPARATED = "separated"
STATUS_PASSTHROUGH = "passthrough"
SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class TrackAudio:
    track_id: str
    audio_path: str


@dataclass(frozen=True)
class SeparationResult:
    """A manifest row (``reason`` empty) or a reject (``path`` empty, ``reason`` set)."""

    track_id: str
    audio_path: str
    path: str = ""
    seconds: float = 0.0
    status: str = ""
    reason: str = ""
    reused: bool = False

    @property
    def rejected(self) -> bool:
        return bool(self.reason)


def output_path(out_dir: str | os.PathLike, track_id: str, audio_format: str) -> Path:
    return Path(out_dir) / "audio" / f"{track_id}.{audio_format}"


def output_settings(cfg: SeparationConfig) -> dict:
    """Everything that changes an instrumental file; finished files are reused only under the same settings."""
    weights = Path(cfg.weights_dir) if cfg.weights_dir else None
    files = (
        sorted((p.name, p.stat().st_size) for p in weights.iterdir()) if weights and weights.is_dir() else []
    )
    return {
        "model": cfg.model,
        "weights": files,
        "segment": cfg.segment,
        "overlap": cfg.overlap,
        "shifts": cfg.shifts,
        "block_seconds": cfg.block_seconds,
        "audio_format": cfg.audio_format,
    }


def prepare_audio_dir(cfg: SeparationConfig, track_ids: set[str]) -> None:
    """Drop finished files made under other settings, or of tracks no longer prepared; record the settings."""
    audio_dir = Path(cfg.out_dir) / "audio"
    if cfg.passthrough or not audio_dir.exists():
        if not cfg.passthrough:
            write_json_atomic(audio_dir / SETTINGS_FILE, output_settings(cfg))
        return
    settings_file = audio_dir / SETTINGS_FILE
    current = json.loads(json.dumps(output_settings(cfg)))  # tuples -> lists, as read back from disk
    same = settings_file.exists() and json.loads(settings_file.read_text()) == current
    stale = [p for p in audio_dir.glob(f"*.{cfg.audio_format}") if not same or p.stem not in track_ids]
    if stale:
        log.warning(
            "%s: removing %d instrumental files (%s)",
            audio_dir,
            len(stale),
            "separation settings changed" if not same else "tracks no longer prepared",
        )
        for p in stale:
            p.unlink()
    write_json_atomic(settings_file, output_settings(cfg))


def existing_result(track: TrackAudio, cfg: SeparationConfig) -> SeparationResult | None:
    """The result of a finished earlier run for this track (its output file exists), else None."""
    out = output_path(cfg.out_dir, track.track_id, cfg.audio_format)
    if cfg.passthrough or not out.exists():
        return None
    try:
        seconds = audio_info(out).duration
    except AudioDecodeError as exc:
        log.warning("%s: existing output unreadable (%s); redoing it", out, exc.reason)
        return None
    return SeparationResult(
        track.track_id, track.audio_path, str(out), seconds, STATUS_SEPARATED, reused=True
    )


def process_track(track: TrackAudio, cfg: SeparationConfig, remover: VocalRemover | None) -> SeparationResult:
    """Validate (``none``) or separate one track; decode problems become a reject, never an exception."""
    try:
        if remover is None:
            scan = scan_audio(track.audio_path)
            return SeparationResult(
                track.track_id, track.audio_path, track.audio_path, scan.seconds, STATUS_PASSTHROUGH
            )
        out = output_path(cfg.out_dir, track.track_id, cfg.audio_format)
        seconds = remover.separate_file(track.audio_path, out)
        return SeparationResult(track.track_id, track.audio_path, str(out), seconds, STATUS_SEPARATED)
    except AudioDecodeError as exc:
        log.warning("reject %s: %s", track.track_id, exc.reason)
        return SeparationResult(track.track_id, track.audio_path, reason=exc.reason)


class SeparationWorker:
    """Holds one demucs model; used in-process (all threads) or as a Ray actor (``single_thread``: one CPU each)."""

    def __init__(self, cfg: SeparationConfig, single_thread: bool = False):
        import torch

        if single_thread and not torch.cuda.is_available():
            torch.set_num_threads(1)  # parallelism comes from the workers
        self.cfg = cfg
        self.remover = VocalRemover.from_config(cfg)

    def run(self, track: TrackAudio) -> SeparationResult:
        return process_track(track, self.cfg, self.remover)


def resolve_workers(cfg: SeparationConfig) -> tuple[int, bool]:
    """(workers, on_gpu): ``separate.workers`` or, when 0, one per GPU if present else one per CPU."""
    gpus = 0 if cfg.passthrough or cfg.device == "cpu" else cuda_device_count()
    if cfg.workers > 0:
        return cfg.workers, gpus > 0
    return (gpus, True) if gpus else (available_cpus(), False)


def run_separation(
    tracks: Sequence[TrackAudio],
    cfg: SeparationConfig,
    worker_factory: Callable[[], SeparationWorker] | None = None,
    address: str = "",
) -> list[SeparationResult]:
    """Results for every track (sorted by track_id): reused, newly separated/validated, or rejected.

    ``worker_factory`` builds the in-process worker (tests inject counting workers); Ray actors are used when
    more than one worker is configured, or always on a Ray cluster (``address`` = ``ray.address``, or
    ``RAY_ADDRESS``).
    """
    address = resolve_address(address)
    prepare_audio_dir(cfg, {t.track_id for t in tracks})
    results: list[SeparationResult] = []
    pending: list[TrackAudio] = []
    for track in tracks:
        done = existing_result(track, cfg)
        if done is None:
            pending.append(track)
        else:
            results.append(done)
    if results:
        log.info("%d of %d tracks already separated; skipping them", len(results), len(tracks))
    n_workers, on_gpu = resolve_workers(cfg)
    bar = tqdm(total=len(pending), desc=f"separate ({cfg.model})", unit="track")
    if cfg.passthrough:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            for res in pool.map(lambda t: process_track(t, cfg, None), pending):
                results.append(res)
                bar.update()
    elif worker_factory is not None or not pending or (not address and (n_workers == 1 or len(pending) <= 1)):
        worker = (worker_factory or (lambda: SeparationWorker(cfg)))() if pending else None
        for track in pending:
            results.append(worker.run(track))
            bar.update()
    else:
        results.extend(_run_with_ray(pending, cfg, n_workers, on_gpu, bar, address))
    bar.close()
    return sorted(results, key=lambda r: r.track_id)


def _run_with_ray(
    pending: Sequence[TrackAudio],
    cfg: SeparationConfig,
    n_workers: int,
    on_gpu: bool,
    bar: tqdm,
    address: str,
) -> list[SeparationResult]:
    """Separate ``pending`` on Ray actors (a private local instance, or the cluster at ``address``)."""
    import ray
    from ray.util import ActorPool

    out: list[SeparationResult] = []
    local_cpus = max(n_workers, 1) if not on_gpu else available_cpus()
    with ray_session(num_cpus=local_cpus, num_gpus=n_workers if on_gpu else 0, address=address):
        if address:  # the cluster's resources, not this machine's
            gpus = 0 if cfg.device == "cpu" else cluster_gpus()
            on_gpu = gpus > 0
            n_workers = cfg.workers or gpus or cluster_cpus()
            check_reachable(Path(cfg.out_dir).resolve(), "separate.out_dir")
        # workers may run elsewhere, in another directory: they get absolute paths; results keep the given ones
        shipped = replace(
            cfg,
            out_dir=str(Path(cfg.out_dir).resolve()),
            weights_dir=str(Path(cfg.weights_dir).resolve()) if cfg.weights_dir else "",
        )
        given = {t.track_id: t for t in pending}
        actor_cls = ray.remote(num_cpus=0 if on_gpu else 1, num_gpus=1 if on_gpu else 0)(SeparationWorker)
        actors = [actor_cls.remote(shipped, single_thread=True) for _ in range(min(n_workers, len(pending)))]
        log.info(
            "separating %d tracks on %d Ray actor(s) (%s each)",
            len(pending),
            len(actors),
            "1 GPU" if on_gpu else "1 CPU",
        )
        pool = ActorPool(actors)
        tracks = [TrackAudio(t.track_id, str(Path(t.audio_path).resolve())) for t in pending]
        for res in pool.map_unordered(lambda actor, track: actor.run.remote(track), tracks):
            track = given[res.track_id]
            path = str(output_path(cfg.out_dir, res.track_id, cfg.audio_format)) if res.path else ""
            out.append(replace(res, audio_path=track.audio_path, path=path))
            bar.update()
        for actor in actors:
            ray.kill(actor)
    return out
