"""Prompt sets: the challenge format (id + caption [+ concepts] [+ split]) and the built-in held-out set.

A prompt file is JSON (a list of objects, or ``{"prompts": [...]}``), JSONL (one object per line) or CSV/TSV.
Per prompt: an id (``prompt_id`` or ``id``), a caption (``caption``, ``prompt`` or ``text``) and its concepts,
either as ``concepts`` (a list, a ``{category: [...]}`` mapping, or in CSV/TSV a JSON list or a ``;``/``|``/``,``
separated string) or as ``genre``/``instrument``/``mood`` columns. Uncategorised concepts go under
``"concept"``; a Jamendo-style ``genre---rock`` is split into its category. Ids name output files, so they may
hold only letters, digits, ``.``, ``_`` and ``-``.

The challenge's own format is a CSV ``id,prompt`` without concepts: a prompt without any concept gets the
MTG-Jamendo genre / instrument / mood tags its caption names (:mod:`evaluation.challenge.vocabulary`), marked
``concepts_from: caption`` in the saved prompt set; the prompts whose caption names none are logged (CCS leaves
them out). ``split`` (``ranked``, the default, or ``ood``; also ``in_distribution: true/false``) marks which
prompts the headline metrics rank; ``ood`` prompts are scored apart (``ood.*`` in metrics.json).

The built-in set is the held-out (``test``) split of ``data/prepared/tracks.parquet``: up to ``n_prompts``
tracks (all of them, sorted by id, when there are fewer; else a seeded sample), prompt id = track id, concepts =
the track's tags, split by training coverage (:mod:`evaluation.challenge.ood_split`: the 20 % least covered by
the train split's tag combinations are ``ood``).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evaluation.challenge.ood_split import OOD, RANKED, split_by_training_coverage
from evaluation.challenge.vocabulary import extract_concepts
from model.runtime.atomic_io import atomic_path
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

CATEGORIES = ("genre", "instrument", "mood")
ID_KEYS = ("prompt_id", "id")
CAPTION_KEYS = ("caption", "prompt", "text")
UNCATEGORISED = "concept"
BUILTIN = "builtin"
GIVEN, FROM_CAPTION = "given", "caption"  # where a prompt's concepts came from
_SPLIT_NAMES = {
    "ranked": RANKED,
    "in": RANKED,
    "id": RANKED,
    "in_distribution": RANKED,
    "in-distribution": RANKED,
    "ood": OOD,
    "out": OOD,
    "out_of_distribution": OOD,
    "out-of-distribution": OOD,
}
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CATEGORY_ALIASES = {
    "mood/theme": "mood",
    "moodtheme": "mood",
    "mood_theme": "mood",
    "instruments": "instrument",
    "genres": "genre",
    "moods": "mood",
}


class PromptSetError(InputError, ValueError):
    """A prompt file (or the built-in source) is unusable; the message names the file and the prompt."""


@dataclass(frozen=True)
class Prompt:
    """One prompt: ``prompt_id`` (names files), ``caption`` (the text the model sees), concepts per category,
    ``split`` (``ranked`` or ``ood``) and where the concepts came from (``given`` or ``caption``)."""

    prompt_id: str
    caption: str
    concepts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    split: str = RANKED
    concepts_from: str = GIVEN

    @property
    def all_concepts(self) -> tuple[str, ...]:
        """Every concept, in category order, without duplicates (the M of CCS = K/M)."""
        seen: dict[str, None] = {}
        for names in self.concepts.values():
            seen.update(dict.fromkeys(names))
        return tuple(seen)

    def to_record(self) -> dict[str, Any]:
        """The JSON object this prompt is written as (and read back from) in a JSONL prompt file."""
        return {
            "prompt_id": self.prompt_id,
            "caption": self.caption,
            "concepts": {k: list(v) for k, v in self.concepts.items()},
            "concepts_from": self.concepts_from,
            "split": self.split,
        }


def load_prompts(path: str | os.PathLike) -> list[Prompt]:
    """Read a prompt file (.json, .jsonl, .csv, .tsv); raises PromptSetError naming the file and prompt."""
    p = Path(path)
    if not p.is_file():
        raise PromptSetError(f"{p}: prompt file not found (generate.prompts is 'builtin' or a path to one)")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        records = _read_jsonl(p)
    elif suffix == ".json":
        records = _read_json(p)
    elif suffix in (".csv", ".tsv"):
        records = _read_table(p, "\t" if suffix == ".tsv" else ",")
    else:
        raise PromptSetError(f"{p}: unknown prompt file type {suffix!r}; use .json, .jsonl, .csv or .tsv")
    prompts = [_prompt_from_record(rec, p, n) for n, rec in records]
    if not prompts:
        raise PromptSetError(f"{p}: the prompt file holds no prompts")
    _check_unique(prompts, str(p))
    return with_caption_concepts(prompts, str(p))


def with_caption_concepts(prompts: list[Prompt], source: str) -> list[Prompt]:
    """Prompts without any concept (and not already extracted) get the concepts their caption names; logged,
    with the prompts whose caption names none."""
    out = [
        replace(pr, concepts=extract_concepts(pr.caption), concepts_from=FROM_CAPTION)
        if not pr.concepts and pr.concepts_from == GIVEN
        else pr
        for pr in prompts
    ]
    extracted = [pr for pr, old in zip(out, prompts, strict=True) if pr is not old]
    if extracted:
        log.info(
            "%s: %d prompt(s) without concept lists; concepts taken from their captions "
            "(MTG-Jamendo genre/instrument/mood vocabulary)",
            source,
            len(extracted),
        )
        for pr in extracted:
            log.info("  %s: %s", pr.prompt_id, _describe(pr.concepts) or "none")
    without = without_concepts(out)
    if without:
        log.warning(
            "%s: %d prompt(s) name no genre, instrument or mood (%s); CCS leaves them out",
            source,
            len(without),
            ", ".join(without),
        )
    return out


def without_concepts(prompts: Iterable[Prompt]) -> list[str]:
    """The ids of the prompts that have no concept (CCS is undefined for them)."""
    return [pr.prompt_id for pr in prompts if not pr.all_concepts]


def _describe(concepts: Mapping[str, tuple[str, ...]]) -> str:
    return "; ".join(f"{c}: {', '.join(v)}" for c, v in concepts.items())


def save_prompts(path: str | os.PathLike, prompts: Iterable[Prompt]) -> None:
    """Write prompts as JSONL (readable by ``load_prompts``), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(pr.to_record(), ensure_ascii=False) + "\n" for pr in prompts))


def builtin_prompts(tracks_path: str | os.PathLike, n_prompts: int = 100, seed: int = 0) -> list[Prompt]:
    """Prompts from the ``test`` split of a tracks.parquet (columns of docs/ARCHITECTURE.md)."""
    import polars as pl

    p = Path(tracks_path)
    if not p.is_file():
        raise PromptSetError(f"{p}: tracks table not found; run the prepare stage first (dvc repro prepare)")
    tracks = pl.read_parquet(p)
    missing = [c for c in ("track_id", "caption", "split", *CATEGORIES) if c not in tracks.columns]
    if missing:
        raise PromptSetError(f"{p}: missing column(s) {', '.join(missing)} for the built-in prompt set")
    train = [
        {c: row[c] or () for c in CATEGORIES}
        for row in tracks.filter(pl.col("split") == "train").select(*CATEGORIES).iter_rows(named=True)
    ]
    test = tracks.filter(pl.col("split") == "test").sort("track_id")
    if test.height == 0:
        raise PromptSetError(
            f"{p}: no track has split == 'test'; the built-in prompt set needs a held-out split"
        )
    if n_prompts and test.height > n_prompts:
        keep = sorted(random.Random(seed).sample(range(test.height), n_prompts))
        test = test[keep]
    elif n_prompts and test.height < n_prompts:
        log.warning(
            "%s: only %d test tracks, fewer than the %d prompts asked for; using all of them",
            p,
            test.height,
            n_prompts,
        )
    prompts = []
    for row in test.iter_rows(named=True):
        concepts = {c: tuple(row[c] or ()) for c in CATEGORIES}
        prompts.append(_make_prompt(row["track_id"], row["caption"], concepts, f"{p} (test split)"))
    prompts = split_by_training_coverage(prompts, train)
    log.info(
        "built-in prompts: %d ranked, %d out of distribution (least covered by the %d training tracks' tags)",
        sum(pr.split == RANKED for pr in prompts),
        sum(pr.split == OOD for pr in prompts),
        len(train),
    )
    return prompts


def resolve_prompts(
    spec: str, tracks_path: str | os.PathLike, n_prompts: int = 100, seed: int = 0
) -> list[Prompt]:
    """``generate.prompts``: ``builtin`` → ``builtin_prompts``; else a prompt file, cut to ``n_prompts`` if > 0."""
    if spec == BUILTIN:
        return builtin_prompts(tracks_path, n_prompts, seed)
    prompts = load_prompts(spec)
    if n_prompts and len(prompts) > n_prompts:
        log.warning(
            "%s: %d prompts, keeping the first %d (generate.n_prompts)", spec, len(prompts), n_prompts
        )
        prompts = prompts[:n_prompts]
    return prompts


def _read_jsonl(p: Path) -> list[tuple[int, Any]]:
    records = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append((n, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise PromptSetError(f"{p}:{n}: not valid JSON ({exc.msg})") from exc
    return records


def _read_json(p: Path) -> list[tuple[int, Any]]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PromptSetError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if isinstance(data, dict) and isinstance(data.get("prompts"), list):
        data = data["prompts"]
    if not isinstance(data, list):
        raise PromptSetError(f'{p}: expected a JSON list of prompt objects (or {{"prompts": [...]}})')
    return list(enumerate(data, start=1))


def _read_table(p: Path, delimiter: str) -> list[tuple[int, Any]]:
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        if not reader.fieldnames:
            raise PromptSetError(f"{p}: empty file (expected a header row with prompt_id and caption)")
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
        return [(n, row) for n, row in enumerate(reader, start=2)]


def _pick(rec: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in rec and rec[key] is not None:
            return rec[key]
    return None


def _prompt_from_record(rec: Any, p: Path, n: int) -> Prompt:
    where = f"{p}, prompt #{n}"
    if not isinstance(rec, Mapping):
        raise PromptSetError(
            f"{where}: expected an object with prompt_id and caption, got {type(rec).__name__}"
        )
    pid = _pick(rec, ID_KEYS)
    if pid is None or str(pid).strip() == "":
        raise PromptSetError(f"{where}: no prompt id (a '{ID_KEYS[0]}' or '{ID_KEYS[1]}' field)")
    caption = _pick(rec, CAPTION_KEYS)
    where = f"{p}, prompt {pid}"
    origin = rec.get("concepts_from") or GIVEN
    if origin not in (GIVEN, FROM_CAPTION):
        raise PromptSetError(f"{where}: concepts_from {origin!r} is neither {GIVEN!r} nor {FROM_CAPTION!r}")
    concepts = _concepts_from_record(rec, where)
    return _make_prompt(str(pid).strip(), caption, concepts, str(p), _split_of(rec, where), origin)


def _split_of(rec: Mapping[str, Any], where: str) -> str:
    """``split`` (ranked / ood and their aliases) or ``in_distribution`` (true / false); ranked by default."""
    value = rec.get("split")
    if value is None or (isinstance(value, str) and not value.strip()):
        flag = rec.get("in_distribution")
        if flag is None or (isinstance(flag, str) and not flag.strip()):
            return RANKED
        truth = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        parsed = flag if isinstance(flag, bool) else truth.get(str(flag).strip().lower())
        if parsed is None:
            raise PromptSetError(f"{where}: in_distribution {flag!r} is not true or false")
        return RANKED if parsed else OOD
    split = _SPLIT_NAMES.get(str(value).strip().lower())
    if split is None:
        raise PromptSetError(f"{where}: split {value!r} is not one of {RANKED!r} or {OOD!r}")
    return split


def _make_prompt(
    pid: str,
    caption: Any,
    concepts: Mapping[str, tuple[str, ...]],
    source: str,
    split: str = RANKED,
    concepts_from: str = GIVEN,
) -> Prompt:
    if not _ID_PATTERN.match(pid):
        raise PromptSetError(
            f"{source}: prompt id {pid!r} cannot name a file; use letters, digits, '.', '_', '-'"
        )
    if not isinstance(caption, str) or not caption.strip():
        raise PromptSetError(
            f"{source}: prompt {pid!r} has an empty caption ({'/'.join(CAPTION_KEYS)}); "
            "every prompt needs text"
        )
    return Prompt(pid, " ".join(caption.split()), dict(concepts), split, concepts_from)


def _concepts_from_record(rec: Mapping[str, Any], where: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    raw = rec.get("concepts")
    if isinstance(raw, Mapping):
        for category, names in raw.items():
            _add(out, _category(str(category)), _as_list(names, where))
    elif raw is not None:
        for name in _as_list(raw, where):
            category, _, tag = name.rpartition("---")
            _add(out, _category(category) if category else UNCATEGORISED, [tag])
    for key, value in rec.items():
        category = _category(str(key))
        if category in CATEGORIES and value is not None:
            _add(out, category, _as_list(value, where))
    return {k: tuple(dict.fromkeys(v)) for k, v in out.items() if v}


def _category(name: str) -> str:
    name = name.strip().lower()
    return _CATEGORY_ALIASES.get(name, name)


def _add(out: dict[str, list[str]], category: str, names: list[str]) -> None:
    out.setdefault(category, []).extend(n for n in names if n)


def _as_list(value: Any, where: str) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    if not isinstance(value, str):
        raise PromptSetError(f"{where}: concepts must be a list or a string, got {type(value).__name__}")
    text = value.strip()
    if text.startswith("["):
        try:
            return _as_list(json.loads(text), where)
        except json.JSONDecodeError as exc:
            raise PromptSetError(
                f"{where}: concepts {text!r} look like JSON but do not parse ({exc.msg})"
            ) from exc
    for sep in (";", "|", ","):
        if sep in text:
            return [part.strip() for part in text.split(sep) if part.strip()]
    return [text] if text else []


def _check_unique(prompts: list[Prompt], source: str) -> None:
    seen: set[str] = set()
    dupes = sorted({pr.prompt_id for pr in prompts if pr.prompt_id in seen or seen.add(pr.prompt_id)})
    if dupes:
        raise PromptSetError(f"{source}: duplicate prompt id(s) {', '.join(dupes)}; ids must be unique")
