"""Fine-tuning study (docs/finetune.md): does a base model learn a genre it never heard from a small folder of it,
fully and with LoRA, and what does it forget? Scored with the evaluate stage's own metrics on two seeds.

Every step runs the pipeline's own stages (``python -m pipelines.<stage> --params <file>``) in ``--root`` (a scratch
clone of the repository: its data/, models/, generated/ and reports/ fill up), with a params file per step under
``<root>/study/``:

1. eval world: the embedded synthetic set with every genre (prepare + separate); its test split is the prompt set
   and the reference, its train/validation splits train the evaluate stage's tagger and local-clap — the same
   judges for every model;
2. base: the same set with ``data.synthetic.exclude_genres: [<genre>]``, prepare → … → train (``--base-steps``);
3. the user's folder: ``--clips`` clips of the held-out genre rendered by the synthetic renderer from seeds the
   built-in set does not use, written as ``<root>/user/<genre>/*.wav`` + ``captions.csv`` (path, caption, tags),
   exactly as a user lays out a folder; prepare (``data.source: folder``) → … → pack;
4. fine-tunes from ``models/base`` (``train.init_from``) on the folder: full and LoRA, ``train.seed`` 0 and 1, and
   the same with replay (``full+replay``, ``lora+replay``: ``train.replay.store`` = the base's packed store, a
   ``--replay-share`` of every batch);
5. generate (every test prompt × 2 clips) and evaluate each model: the base with ``generate.seed`` 0 and 1, a
   fine-tune of ``train.seed`` s with ``generate.seed`` s. CLAP (text_audio) and CCS per genre group are means over
   the per-clip rows of the evaluate stage's ``per_prompt.parquet``, ranked and out-of-distribution prompts alike
   (checked to reproduce metrics.json's ``all_seeds`` over the ranked prompts' rows); FAD is ``all_seeds``'.

Writes ``<root>/study/finetune_study.json`` and prints the table. Steps whose outputs exist are skipped, so a
killed study continues. About 50 minutes on the shared 2-core machine with ``--threads 2`` when nothing else runs.

    git clone /path/to/flowjam /tmp/ft-study && cd /tmp/ft-study
    nice python bench/finetune_study.py --root /tmp/ft-study --threads 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune_study_tables import print_table  # noqa: E402

from model.datasets.captions import caption  # noqa: E402
from model.datasets.synthetic import GENRE_TAGS, INSTRUMENT_TAGS, MOOD_TAGS, synthesize  # noqa: E402
from model.datasets.voices import SAMPLE_RATE  # noqa: E402

FOLDER_SEED = 12345  # the built-in set uses data.synthetic.seed 0: these clips are new audio
SEEDS = (0, 1)
MODES = ("full", "lora", "full+replay", "lora+replay")
BASE_STORE = (
    "data/base/latents/store"  # the base's training data (pack.out_dir of step 2): what replay mixes in
)


def mode_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The train keys of each fine-tuning mode: full (every weight) and LoRA (rank ``--lora-rank`` adapters on the
    default targets, merged into the exported model)."""
    lora = {"rank": args.lora_rank, "alpha": 2.0 * args.lora_rank, "merge": True}
    if args.lora_targets:
        lora["targets"] = args.lora_targets
    full = {"lr": args.full_lr, "warmup": 20, "steps": args.ft_steps}
    adapters = {"lr": args.lora_lr, "warmup": 20, "steps": args.ft_steps, "lora": lora}
    replay = {"replay": {"store": BASE_STORE, "share": args.replay_share}}
    return {"full": full, "lora": adapters, "full+replay": full | replay, "lora+replay": adapters | replay}


def deep_update(base: dict, over: dict) -> dict:
    for key, value in over.items():
        base[key] = deep_update(dict(base.get(key, {})), value) if isinstance(value, dict) else value
    return base


class Study:
    def __init__(self, root: Path, args: argparse.Namespace):
        self.root, self.genre, self.clips, self.threads = root, args.genre, args.clips, args.threads
        self.base_steps, self.tag, self.modes = args.base_steps, args.tag, mode_settings(args)
        self.focus_clips = args.focus_clips
        self.dir = root / "study"
        self.dir.mkdir(exist_ok=True)
        self.defaults = yaml.safe_load((root / "params.yaml").read_text())
        self.timings: dict[str, float] = {}
        results = self.dir / f"finetune_study{self.tag}.json"
        if results.exists():
            self.timings.update(json.loads(results.read_text()).get("seconds", {}))

    def params(self, name: str, over: dict[str, Any]) -> Path:
        path = self.dir / f"params-{name}.yaml"
        tree = deep_update(json.loads(json.dumps(self.defaults)), over)
        path.write_text(yaml.safe_dump(tree, sort_keys=False))
        return path

    def run(self, label: str, stage: str, params: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        # one thread per process: on a busy shared machine two OpenMP threads wait on each other at every op
        env.update({"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)})
        started = time.monotonic()
        print(f"== {label}: {stage}", flush=True)
        cmd = [sys.executable, "-m", f"pipelines.{stage}", "--params", str(params), *extra]
        log = self.dir / "logs" / f"{label}-{stage}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("w") as fh:
            done = subprocess.run(cmd, cwd=self.root, env=env, stdout=fh, stderr=subprocess.STDOUT)
        if done.returncode:
            raise SystemExit(f"{label}: {stage} failed (exit {done.returncode}); see {log}")
        self.timings[f"{label}/{stage}"] = round(time.monotonic() - started, 1)

    # ---- the data sets -----------------------------------------------------------------------------------
    def eval_world(self) -> dict[str, Any]:
        over = {
            "data": {"prepared_dir": "data/eval/prepared"},
            "separate": {"out_dir": "data/eval/instrumental"},
        }
        if not (self.root / "data/eval/instrumental/manifest.parquet").exists():
            params = self.params("eval-world", over)
            for stage in ("prepare", "separate"):
                self.run("eval-world", stage, params)
        return over

    def data_keys(self, name: str) -> dict[str, Any]:
        return {
            "data": {"prepared_dir": f"data/{name}/prepared"},
            "separate": {"out_dir": f"data/{name}/instrumental"},
            "encode": {
                "out_dir": f"data/{name}/latents/shards",
                "stats_path": f"data/{name}/latents/stats.json",
            },
            "pack": {"out_dir": f"data/{name}/latents/store"},
        }

    def base(self) -> Path:
        out = self.root / "models/base"
        if (out / "config.json").exists():
            return out
        synth = self.root / "data/base/prepared/synthetic"
        if (
            not synth.exists()
        ):  # reuse the eval world's audio: exclusion keeps every other file byte-identical
            synth.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["cp", "-r", str(self.root / "data/eval/prepared/synthetic"), str(synth)], check=True
            )
        over = deep_update(
            self.data_keys("base"),
            {
                "data": {"synthetic": {"exclude_genres": [self.genre]}},
                "train": {"steps": self.base_steps, "out_dir": "models/base"},
            },
        )
        params = self.params("base", over)
        for stage in ("prepare", "separate", "encode", "stats", "pack"):
            self.run("base", stage, params)
        self.run("base", "train", params, "--live-dir", "dvclive-base")
        return out

    def write_folder(self) -> Path:
        """``--clips`` clips of the held-out genre as a user's folder: WAVs + captions.csv (path, caption, tags)."""
        folder = self.root / "user" / self.genre
        captions = folder / "captions.csv"
        if captions.exists():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(self.clips):
            rng = np.random.default_rng([FOLDER_SEED, i])
            k = int(rng.integers(1, 4))
            instruments = tuple(
                sorted(INSTRUMENT_TAGS[j] for j in rng.choice(len(INSTRUMENT_TAGS), k, replace=False))
            )
            mood = MOOD_TAGS[int(rng.integers(len(MOOD_TAGS)))]
            audio = synthesize(self.genre, instruments, mood, 12.0, [FOLDER_SEED, i, 1])
            name = f"session-{i // 10 + 1}/take-{i:02d}.wav"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(folder / name), audio.T, SAMPLE_RATE, subtype="PCM_16")
            tags = [
                f"genre---{self.genre}",
                *(f"instrument---{x}" for x in instruments),
                f"mood/theme---{mood}",
            ]
            rows.append(
                {
                    "path": name,
                    "caption": caption(name, [self.genre], instruments, [mood]),
                    "tags": " ".join(tags),
                }
            )
        with captions.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["path", "caption", "tags"])
            writer.writeheader()
            writer.writerows(rows)
        return folder

    def folder_data(self, folder: Path) -> dict[str, Any]:
        over = deep_update(
            self.data_keys("ft"), {"data": {"source": "folder", "folder": {"root": str(folder)}}}
        )
        if not (self.root / "data/ft/latents/store").exists():
            params = self.params("folder", over)
            for stage in ("prepare", "separate", "encode", "stats", "pack"):
                self.run("folder", stage, params)
        return over

    def fine_tune(self, data: dict[str, Any], mode: str, seed: int) -> Path:
        name = f"ft{self.tag}-{mode.replace('+', '-')}-s{seed}"
        out = self.root / "models" / name
        if not (out / "config.json").exists():
            train = {"init_from": "models/base", "seed": seed, "out_dir": f"models/{name}"}
            train.update({"val_every": 50, "ckpt_every": 100, **json.loads(json.dumps(self.modes[mode]))})
            params = self.params(name, deep_update(json.loads(json.dumps(data)), {"train": train}))
            self.run(name, "train", params, "--live-dir", f"dvclive-{name}")
        return out

    def evaluate(self, world: dict[str, Any], model: str, seed: int, focus: bool = False) -> Path:
        """Generate with ``model`` (``generate.seed`` = ``seed``) and score it with the evaluate stage: 2 clips for
        each of the 100 test prompts, or with ``focus`` ``--focus-clips`` clips for each of the held-out genre's
        prompts — the same CLAP and CCS on ``focus_clips / 2`` times the clips, so less of the seed-to-seed spread
        comes from which clips happened to be drawn."""
        name = f"{model}-g{seed}" + ("-focus" if focus else "")
        reports = self.root / "reports" / name
        if not (reports / "per_prompt.parquet").exists():
            generate: dict[str, Any] = {"n_prompts": 0, "seed": seed, "out_dir": f"generated/{name}"}
            if focus:
                generate.update({"prompts": str(self.focus_prompts()), "seeds": self.focus_clips})
            over = deep_update(
                json.loads(json.dumps(world)),
                {
                    "train": {"out_dir": f"models/{model}"},
                    "generate": generate,
                    "evaluate": {"ceiling": False, "out_dir": f"reports/{name}"},
                },
            )
            params = self.params(f"eval-{name}", over)
            self.run(name, "generate", params)
            self.run(name, "evaluate", params)
        return reports

    def focus_prompts(self) -> Path:
        """The held-out genre's prompts of the built-in set, as a prompt file (concepts given, split ranked)."""
        path = self.dir / f"prompts-{self.genre}.jsonl"
        if not path.exists():
            records = [json.loads(line) for line in (self.root / "generated/base-g0/prompts.jsonl").open()]
            chosen = [r for r in records if self.genre in (r["concepts"].get("genre") or [])]
            path.write_text("".join(json.dumps({**r, "split": "ranked"}) + "\n" for r in chosen))
        return path

    # ---- scores ------------------------------------------------------------------------------------------
    def scores(self, reports: Path, generated: Path, focus: bool = False) -> dict[str, Any]:
        import polars as pl

        clips = pl.read_parquet(reports / "per_prompt.parquet")
        genres = {}
        for line in (generated / "prompts.jsonl").read_text().splitlines():
            record = json.loads(line)
            genres[record["prompt_id"]] = (record["concepts"].get("genre") or ["?"])[0]
        clips = clips.with_columns(pl.col("prompt_id").replace_strict(genres).alias("genre"))
        metrics = json.loads((reports / "metrics.json").read_text())
        ranked = clips.filter(pl.col("split") == "ranked")  # all_seeds scores the ranked prompts' clips
        assert abs(ranked["text_audio"].mean() - metrics["all_seeds"]["clap"]) < 1e-9, (
            "per-clip CLAP != all_seeds"
        )
        assert abs(ranked["ccs"].mean() - metrics["all_seeds"]["ccs"]) < 1e-9, "per-clip CCS != all_seeds"

        def group(frame: Any) -> dict[str, float]:
            # the judge's verdict on the clip's own genre concept (CCS also counts instruments and mood)
            genre_heard = [
                f"genre:{g}" in present
                for g, present in zip(frame["genre"], frame["concepts_present"], strict=True)
            ]
            return {
                "clap": float(frame["text_audio"].mean()),
                "ccs": float(frame["ccs"].mean()),
                "ccs_margin": float((frame["ccs"] - frame["ccs_shuffled"]).mean()),
                "genre_heard": float(np.mean(genre_heard)),
                "clips": frame.height,
            }

        if focus:
            return {"held_out": group(clips)}
        held = clips.filter(pl.col("genre") == self.genre)
        others = clips.filter(pl.col("genre") != self.genre)
        return {"held_out": group(held), "others": group(others), "fad_all": metrics["all_seeds"]["fad"]}

    def latent_shift(self) -> dict[str, float]:
        """How the folder's latents sit in the base's standardised space: per channel (mean_f - mean_b) / std_b
        and std_f / std_b (medians and extremes over channels) — what train.init_stats: base hands the network."""
        folder = json.loads((self.root / "data/ft/latents/stats.json").read_text())
        base = json.loads((self.root / "models/base/config.json").read_text())["stats"]
        mean_f, var_f = np.array(folder["mean"]), np.array(folder["var"])
        mean_b, var_b = np.array(base["mean"]), np.array(base["var"])
        shift, ratio = (mean_f - mean_b) / np.sqrt(var_b), np.sqrt(var_f / var_b)
        return {
            "median_abs_shift": float(np.median(np.abs(shift))),
            "max_abs_shift": float(np.abs(shift).max()),
            "median_std_ratio": float(np.median(ratio)),
            "min_std_ratio": float(ratio.min()),
            "max_std_ratio": float(ratio.max()),
        }

    def main(self, modes: list[str], seeds: list[int]) -> dict[str, Any]:
        world = self.eval_world()
        self.base()
        data = self.folder_data(self.write_folder())
        models = {"base": [("base", s) for s in seeds]}
        for mode in modes:
            models[mode] = [(self.fine_tune(data, mode, s).name, s) for s in seeds]
        results: dict[str, Any] = {}
        for label, runs in models.items():
            results[label] = {}
            for model, seed in runs:
                reports = self.evaluate(world, model, seed)
                results[label][f"seed{seed}"] = self.scores(
                    reports, self.root / "generated" / f"{model}-g{seed}"
                )
        focus: dict[str, Any] = {}
        if self.focus_clips:
            for label, runs in models.items():
                focus[label] = {
                    f"seed{seed}": self.scores(
                        self.evaluate(world, model, seed, focus=True),
                        self.root / "generated" / f"{model}-g{seed}-focus",
                        focus=True,
                    )
                    for model, seed in runs
                }
        summary = {
            "genre": self.genre,
            "base_steps": self.base_steps,
            "clips": self.clips,
            "modes": {mode: self.modes[mode] for mode in modes},
            "folder_latents_in_base_space": self.latent_shift(),
            "results": results,
            "focus_clips": self.focus_clips,
            "focus": focus,
            "seconds": self.timings,
        }
        (self.dir / f"finetune_study{self.tag}.json").write_text(json.dumps(summary, indent=2))
        print_table(summary)
        return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="a scratch clone of the repository")
    parser.add_argument("--genre", default="jazz", choices=GENRE_TAGS)
    parser.add_argument("--base-steps", type=int, default=6000)
    parser.add_argument("--ft-steps", type=int, default=400)
    parser.add_argument("--full-lr", type=float, default=5e-4)
    parser.add_argument("--lora-lr", type=float, default=2e-3)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument(
        "--replay-share", type=float, default=0.5, help="train.replay.share of the replay modes"
    )
    parser.add_argument("--lora-targets", nargs="+", help="train.lora.targets (default: the params default)")
    parser.add_argument(
        "--tag", default="", help="names this set of fine-tunes: models/ft<tag>-<mode>-s<seed>"
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument(
        "--focus-clips",
        type=int,
        default=10,
        help="clips per prompt of a second evaluation on the held-out genre's prompts only (0 = skip it)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per stage process")
    args = parser.parse_args()
    Study(args.root.resolve(), args).main(args.modes, args.seeds)


if __name__ == "__main__":
    main()
