"""The params schema is the one table of defaults: params.yaml equals it, and no library or stage dataclass that
mirrors a params section carries defaults of its own (a second table would drift, as ``TrainConfig.steps`` once
did: 3000 against the schema's 4200)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipelines.common.params import read_tree
from pipelines.common.schema import ParamsSchema

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "evaluation", "pipelines")
MIRROR_MIN_FIELDS, MIRROR_SHARE = 3, 0.75


def _sections(cls: type[BaseModel] = ParamsSchema, prefix: str = "") -> dict[str, set[str]]:
    """Dotted section -> its leaf keys."""
    out: dict[str, set[str]] = {}
    leaves = set()
    for name, field in cls.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out.update(_sections(field.annotation, f"{prefix}{name}."))
        else:
            leaves.add(name)
    if leaves and prefix:
        out[prefix.rstrip(".")] = leaves
    return out


def _dataclasses() -> list[type]:
    found = []
    for pkg in PACKAGES:
        for info in pkgutil.walk_packages(importlib.import_module(pkg).__path__, f"{pkg}."):
            if info.name.endswith("scan_triton_kernels"):  # imports triton at load; holds no dataclass
                continue
            module = importlib.import_module(info.name)
            found += [
                obj
                for obj in vars(module).values()
                if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == info.name
            ]
    return found


def mirrors(cls: type, sections: dict[str, set[str]]) -> list[tuple[str, set[str]]]:
    """The sections ``cls`` mirrors: at least 3 of its fields are that section's keys, and they are 3/4 of its
    fields (so an optimiser config with a ``seed`` and ``steps`` is not one)."""
    names = {f.name for f in dataclasses.fields(cls)}
    out = []
    for section, keys in sections.items():
        shared = names & keys
        if len(shared) >= MIRROR_MIN_FIELDS and len(shared) >= MIRROR_SHARE * len(names):
            out.append((section, shared))
    return out


def defaulted(cls: type, names: set[str]) -> list[str]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return sorted(
        n
        for n in names
        if fields[n].default is not dataclasses.MISSING
        or fields[n].default_factory is not dataclasses.MISSING
    )


def test_params_yaml_equals_the_schema_defaults():
    assert read_tree(ROOT / "params.yaml") == ParamsSchema().model_dump()


def test_no_dataclass_mirroring_a_params_section_has_defaults():
    sections = _sections()
    found = {
        f"{cls.__module__}.{cls.__qualname__}": section
        for cls in _dataclasses()
        for section, _ in mirrors(cls, sections)
    }
    # the check sees the configs it is meant to see (so it cannot pass by finding nothing)
    expected = {
        "model.training.config.TrainConfig": "train",
        "model.network.backbone.VelocityNetConfig": "model",
        "model.codec.mel.MelCodecConfig": "codec.mel",
        "model.datasets.synthetic.SyntheticConfig": "data.synthetic",
        "model.separation.vocal_remover.SeparationConfig": "separate",
        "model.data.clips.ClipPolicy": "encode",
        "model.flow.sampling.SamplerConfig": "generate",
        "evaluation.scoring.settings.EvaluateSettings": "evaluate",
    }
    assert expected.items() <= found.items()
    tables = {
        f"{cls.__module__}.{cls.__qualname__} ({section})": defaulted(cls, shared)
        for cls in _dataclasses()
        for section, shared in mirrors(cls, sections)
        if defaulted(cls, shared)
    }
    assert not tables, f"second default tables (take the values from the params schema instead): {tables}"


def test_the_mirror_check_can_fail():
    @dataclasses.dataclass(frozen=True)
    class GenerateSettings:
        steps: int = 4
        cfg_scale: float = 1.5
        method: str = "ab2"
        seeds: int = 2

    [(section, shared)] = mirrors(GenerateSettings, _sections())
    assert section == "generate" and defaulted(GenerateSettings, shared) == [
        "cfg_scale",
        "method",
        "seeds",
        "steps",
    ]


def _sources() -> list[Path]:
    return [p for pkg in (*PACKAGES, "bench") for p in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_params_lookup_with_a_fallback_default(path):
    """Params are read as typed attributes; ``get(params, "a.b", default)`` or ``section.get("key", default)``
    on a params section would be a default outside the schema."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "get" and node.args:
            bad.append(f"line {node.lineno}: get(...)")
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "get"
            and isinstance(func.value, ast.Name)
            and func.value.id in ("params", "section", "params_section", "codec_params", "text_params")
            and len(node.args) == 2
        ):
            bad.append(f"line {node.lineno}: {func.value.id}.get(..., default)")
    assert not bad, f"{path.relative_to(ROOT)}: {bad}"
