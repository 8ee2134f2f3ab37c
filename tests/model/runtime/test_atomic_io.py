"""Atomic directory replacement: the target is always a complete directory, old contents never mixed in; the
binary writers give identical bytes for identical content (DVC must see identical work as unchanged)."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from model.runtime.atomic_io import replace_dir, write_safetensors_atomic, write_torch_atomic


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_replace_dir_swaps_in_the_new_tree_and_removes_the_old(tmp_path):
    target, new = tmp_path / "out", tmp_path / "staging"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    (new / "sub").mkdir(parents=True)
    (new / "sub" / "a.txt").write_text("new")
    replace_dir(new, target)
    assert _tree(target) == {"sub/a.txt": "new"}
    assert not new.exists()
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no .out.old-<pid> left behind


def test_replace_dir_creates_a_missing_target(tmp_path):
    new = tmp_path / "staging"
    new.mkdir()
    (new / "f").write_text("x")
    replace_dir(new, tmp_path / "out")
    assert _tree(tmp_path / "out") == {"f": "x"}


def test_replace_dir_without_the_new_tree_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_text("k")
    with pytest.raises(FileNotFoundError):
        replace_dir(tmp_path / "missing", target)
    assert _tree(target) == {"keep": "k"}
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_safetensors_written_twice_are_byte_identical_and_load(tmp_path):
    tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(5, dtype=torch.float16)}
    metadata = {f"key{i}": str(i) for i in range(12)}  # safetensors itself orders these by a seeded hash map
    for name in ("one", "two"):
        write_safetensors_atomic(tmp_path / f"{name}.safetensors", tensors, metadata)
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()
    loaded = load_file(str(tmp_path / "one.safetensors"))
    assert set(loaded) == set(tensors) and all(torch.equal(loaded[k], v) for k, v in tensors.items())
    with safe_open(str(tmp_path / "one.safetensors"), "pt") as fh:
        assert fh.metadata() == metadata


def test_torch_files_do_not_depend_on_the_file_name(tmp_path):
    payload = {"w": torch.arange(4.0), "info": {"name": "tagger"}}
    write_torch_atomic(tmp_path / "tagger.pt", payload)
    write_torch_atomic(tmp_path / "other-name.pt", payload)
    assert (tmp_path / "tagger.pt").read_bytes() == (tmp_path / "other-name.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "tagger.pt", weights_only=True)["w"], payload["w"])
