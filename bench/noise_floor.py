"""Noise floor per mel band: generated audio against the reference, the reference through the codec, and the
model's latents before any audio is made, so each step of the chain can be blamed or cleared by a figure.

Sets (each clip's first 10 s, mono at the codec's sample rate, analysed with the codec's own STFT and mel
filterbank but without its log floor):

- ``reference``: the test split's instrumental audio (the evaluate stage's reference set);
- ``reference_codec``: the same clips encoded and decoded by the run's codec (what the codec alone adds);
- ``generated``: the run's ``generated/`` clips (seed 0; ``--all-seeds`` for every seed).

With ``--sample`` the trained model (``models/final``) also samples the first ``--prompts`` prompts itself, once per
sampler variant (``--variants``, e.g. ``ab2:4:1.5 euler:32:1.5``: method, steps, CFG), and the script measures
its latents directly (``latent``: mel power exp(z) - floor before any inversion) and after the codec's decode
(``decoded``); the reference's own latents (``reference_latent``) are the comparison in the latent domain. For the
latent sets it also reports the share of latent values at or within 1 and 3 nats of log(log_floor): the log-mel
floor turns every quieter bin into the same value, a point mass the model has to reproduce.

Per set and band: levels in dB (10·log10 of mel power, guarded at -100 dB) of every frame; the floor is the 10th
percentile over all frames of the set. The figure is the excess floor ``floor(set) - floor(reference)`` in dB per
band, summarised as the mean over bands and over the low / middle / high third of the bands; the latent sets are
compared with ``reference_latent``. Writes JSON (``--out``), an SVG of the audio sets' excess floor per band
(``--figure``; docs/images/noise_floor.svg) and prints a table.

    PYTHONPATH=. .venv/bin/python bench/noise_floor.py --root . --sample --prompts 24
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.metrics.audio_sets import read_dataset_split, read_generated  # noqa: E402
from model.audio.io import load_audio  # noqa: E402
from model.codec import build_codec  # noqa: E402
from pipelines.common.params import load_params  # noqa: E402

SECONDS = 10.0
GUARD_DB = -100.0
FLOOR_PERCENTILE = 10
MASS_MARGINS = (0.001, 1.0, 3.0)  # nats above log(log_floor): the share of latent values at or near the floor


def floor_mass(codec, latents: list[torch.Tensor]) -> list[float]:
    """P(z <= log(log_floor) + m) over all values of ``latents`` for each m of MASS_MARGINS."""
    z = torch.cat([x.reshape(-1) for x in latents])
    floor = math.log(codec.cfg.log_floor)
    return [round(float((z <= floor + m).double().mean()), 4) for m in MASS_MARGINS]


def band_levels_db(mel_power: torch.Tensor) -> np.ndarray:
    """mel power (n_mels, T) -> dB (n_mels, T), guarded at GUARD_DB."""
    return (10.0 * torch.log10(mel_power.double().clamp_min(10 ** (GUARD_DB / 10)))).numpy()


def audio_mel_power(codec, wav: np.ndarray) -> torch.Tensor:
    """(1, N) mono at the codec rate -> mel power (n_mels, T), the codec's analysis without its floor."""
    x = torch.from_numpy(np.ascontiguousarray(wav[0], dtype=np.float32))[None]
    spec = codec._stft(x)  # the codec's own centred Hann STFT
    return torch.matmul(codec.filterbank, spec.abs().square())[0]


def latent_mel_power(codec, z: torch.Tensor) -> torch.Tensor:
    """Log-mel latents (n_mels, T) -> the mel power the codec's decoder starts from: exp(z) - floor, >= 0."""
    return (torch.exp(z.double()) - codec.cfg.log_floor).clamp_min(0.0)


def floor_of(levels: list[np.ndarray]) -> np.ndarray:
    """Per band, the FLOOR_PERCENTILE-th percentile of frame levels pooled over clips -> (n_mels,)."""
    return np.percentile(np.concatenate(levels, axis=1), FLOOR_PERCENTILE, axis=1)


def summary(excess: np.ndarray) -> dict[str, float]:
    thirds = np.array_split(excess, 3)
    return {
        "mean_db": float(excess.mean()),
        "low_db": float(thirds[0].mean()),
        "mid_db": float(thirds[1].mean()),
        "high_db": float(thirds[2].mean()),
        "max_db": float(excess.max()),
    }


def load_clip(path: str, sample_rate: int) -> np.ndarray:
    return load_audio(path, sample_rate=sample_rate, channels=1, duration_s=SECONDS)[0]


def measure_files(
    root: Path, params, codec, all_seeds: bool, max_clips: int, masses: dict[str, list[float]]
) -> dict[str, list[np.ndarray]]:
    sr = codec.sample_rate
    refs = read_dataset_split(
        root / params.data.prepared_dir / "tracks.parquet",
        root / params.separate.out_dir / "manifest.parquet",
        "test",
    )[:max_clips]
    sets: dict[str, list[np.ndarray]] = {"reference": [], "reference_codec": [], "reference_latent": []}
    latents = []
    for clip in tqdm(refs, desc="reference", unit="clip", leave=False):
        path = clip.path if Path(clip.path).is_absolute() else str(root / clip.path)
        wav = load_clip(path, sr)
        sets["reference"].append(band_levels_db(audio_mel_power(codec, wav)))
        z = codec.encode(torch.from_numpy(wav)[None])
        latents.append(z[0])
        sets["reference_latent"].append(band_levels_db(latent_mel_power(codec, z[0])))
        decoded = codec.decode(z)[0, :, : wav.shape[-1]].numpy()
        sets["reference_codec"].append(band_levels_db(audio_mel_power(codec, decoded)))
    masses["reference_latent"] = floor_mass(codec, latents)
    generated_dir = root / params.generate.out_dir
    if (generated_dir / "manifest.parquet").exists():
        _, clips = read_generated(generated_dir)
        clips = [c for c in clips if all_seeds or c.seed == 0][:max_clips]
        sets["generated"] = []
        for clip in tqdm(clips, desc="generated", unit="clip", leave=False):
            path = clip.path if Path(clip.path).is_absolute() else str(root / clip.path)
            sets["generated"].append(band_levels_db(audio_mel_power(codec, load_clip(path, sr))))
    return sets


def sample_variants(
    root: Path, params, codec, variants: list[str], n_prompts: int, masses: dict[str, list[float]]
) -> dict[str, list[np.ndarray]]:
    """For each ``method:steps:cfg`` variant: latent and decoded levels of the model's own samples."""
    from evaluation.challenge.prompts import load_prompts
    from model.flow.sampling import SamplerConfig, noise_generator
    from model.flow.text_to_music import TextToMusic

    t2m = TextToMusic.from_dir(root / params.train.out_dir, device="cpu", precision="fp32")
    prompts = load_prompts(root / params.generate.out_dir / "prompts.jsonl")[:n_prompts]
    sets: dict[str, list[np.ndarray]] = {}
    for variant in variants:
        method, steps, cfg = variant.split(":")
        sampler = SamplerConfig(int(steps), float(cfg), method)
        latent, decoded, raw = [], [], []
        for start in tqdm(range(0, len(prompts), 8), desc=variant, unit="batch", leave=False):
            batch = prompts[start : start + 8]
            gens = [noise_generator(p.prompt_id, 0, params.generate.seed) for p in batch]
            z = t2m.latents([p.caption for p in batch], gens, SECONDS, sampler)
            raw.extend(z)
            wav = codec.decode(z)[:, 0, : int(SECONDS * codec.sample_rate)].numpy()
            for zi, wi in zip(z, wav, strict=True):
                latent.append(band_levels_db(latent_mel_power(codec, zi)))
                decoded.append(band_levels_db(audio_mel_power(codec, wi[None])))
        masses[f"latent {variant}"] = floor_mass(codec, raw)
        sets[f"latent {variant}"] = latent
        sets[f"decoded {variant}"] = decoded
    return sets


def report(sets: dict[str, list[np.ndarray]], masses: dict[str, list[float]]) -> dict:
    floors = {name: floor_of(levels) for name, levels in sets.items() if levels}
    out = {"floor_percentile": FLOOR_PERCENTILE, "guard_db": GUARD_DB, "sets": {}}
    for name, floor in floors.items():
        base = "reference_latent" if name.startswith("latent") or name == "reference_latent" else "reference"
        excess = floor - floors[base]
        out["sets"][name] = {
            "clips": len(sets[name]),
            "compared_with": base,
            "floor_db": [round(float(v), 2) for v in floor],
            "median_db": [round(float(v), 2) for v in np.median(np.concatenate(sets[name], axis=1), axis=1)],
            "excess_db": [round(float(v), 2) for v in excess],
            "excess": summary(excess),
        }
        if name in masses:
            out["sets"][name]["floor_mass"] = dict(zip(map(str, MASS_MARGINS), masses[name], strict=True))
    return out


def print_report(out: dict) -> None:
    print(
        f"floor = {out['floor_percentile']}th percentile of frame levels per mel band (dB, guard {out['guard_db']}); "
        "excess = floor - floor of the reference (latent sets: of the reference's latents)"
    )
    print(
        f"{'set':<28} {'clips':>5} {'floor dB':>9} {'excess':>8} {'low':>7} {'mid':>7} {'high':>7} {'max':>7}"
    )
    for name, row in out["sets"].items():
        e = row["excess"]
        print(
            f"{name:<28} {row['clips']:>5} {np.mean(row['floor_db']):9.1f} {e['mean_db']:8.1f} {e['low_db']:7.1f} "
            f"{e['mid_db']:7.1f} {e['high_db']:7.1f} {e['max_db']:7.1f}"
        )
    margins = ", ".join(f"{m:g}" for m in MASS_MARGINS)
    print(f"share of latent values within ({margins}) nats of log(log_floor):")
    for name, row in out["sets"].items():
        if "floor_mass" in row:
            print(f"  {name:<26} " + " ".join(f"{v:.3f}" for v in row["floor_mass"].values()))


def excess_figure(out: dict, names: list[str] | None = None) -> str:
    """Excess floor (dB over the reference's) per mel band of the audio sets (not the latent ones)."""
    from evaluation.report.figures import svg_line_plot

    names = names or [
        n for n, row in out["sets"].items() if row["compared_with"] == "reference" and n != "reference"
    ]
    curves = {}
    for name in names:
        excess = np.array(out["sets"][name]["excess_db"])
        curves[name] = (np.arange(len(excess), dtype=float), excess)
    return svg_line_plot(
        curves, width=720, x_label="mel band (excess floor, dB)", label="noise floor per band"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--root", default=".", help="a checkout with a finished run (data/, generated/, models/)"
    )
    parser.add_argument("--params", default="params.yaml", help="relative to --root")
    parser.add_argument("--all-seeds", action="store_true")
    parser.add_argument("--max-clips", type=int, default=100)
    parser.add_argument("--sample", action="store_true", help="also sample the model itself per --variants")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--variants", nargs="*", default=["ab2:4:1.5", "ab2:4:1.0", "euler:32:1.5"])
    parser.add_argument("--out", default="")
    parser.add_argument("--figure", default="", help="SVG of the audio sets' excess floor per mel band")
    parser.add_argument(
        "--figure-sets", nargs="*", default=None, help="sets drawn (default: every audio set)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(args.root).resolve()
    params = load_params(root / args.params)
    codec = build_codec(params.codec.model_dump(), device="cpu")
    if codec.name != "mel":
        raise SystemExit(f"codec.name is {codec.name}: this study measures the mel codec's log floor")
    masses: dict[str, list[float]] = {}
    sets = measure_files(root, params, codec, args.all_seeds, args.max_clips, masses)
    if args.sample:
        sets.update(sample_variants(root, params, codec, args.variants, args.prompts, masses))
    out = report(sets, masses)
    out["codec"] = {"log_floor": codec.cfg.log_floor, "log_floor_db": 10 * math.log10(codec.cfg.log_floor)}
    print_report(out)
    if args.figure:
        Path(args.figure).write_text(excess_figure(out, args.figure_sets) + "\n")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
