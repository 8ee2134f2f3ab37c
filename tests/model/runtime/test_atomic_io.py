"""Atomic directory replacement: the target is always a complete directory, old contents never mixed in."""

from __future__ import annotations

import os

import pytest

from model.runtime.atomic_io import replace_dir


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
