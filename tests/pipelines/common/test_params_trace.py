"""The recording view of params and the dvc.yaml comparison built on it."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from pipelines.common.params_trace import (
    TRACE_ENV,
    TracedParams,
    leaf_keys,
    listed_keys,
    params_mismatch,
    read_keys,
)

TREE = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": 4, "g": {"h": 5}}


class C(BaseModel):
    d: int = 2
    e: int = 3


class A(BaseModel):
    b: int = 1
    c: C = C()


class G(BaseModel):
    h: int = 5


class Tree(BaseModel):
    a: A = A()
    f: int = 4
    g: G = G()


def test_fetching_a_value_records_it_and_only_it():
    p = TracedParams(Tree())
    assert p.a.c.d == 2 and p.f == 4
    assert p.reads == {"a.c.d", "f"}
    assert isinstance(p.g, TracedParams)  # a section alone is not a read
    assert p.reads == {"a.c.d", "f"}


def test_dumping_or_pickling_a_section_reads_all_of_it():
    p = TracedParams(Tree())
    assert p.a.c.model_dump() == {"d": 2, "e": 3}
    assert p.reads == {"a.c.d", "a.c.e"}
    p = TracedParams(Tree())
    assert pickle.loads(pickle.dumps(p.a)) == A() and p.reads == {"a.b", "a.c.d", "a.c.e"}
    p = TracedParams(Tree())
    with pytest.raises(AttributeError, match="read-only"):
        p.f = 3


def test_listed_keys_and_mismatch_both_ways():
    assert leaf_keys(TREE) == {"a.b", "a.c.d", "a.c.e", "f", "g.h"}
    listed = listed_keys(["a.c", "f", {"params.yaml": ["g"]}], TREE)
    assert listed == {"a.c.d", "a.c.e", "f", "g.h"}
    assert params_mismatch(listed, {"a.c.d", "a.c.e", "f", "g.h"}) == ([], [])
    assert params_mismatch(listed, {"a.b", "a.c.d", "a.c.e", "f", "g.h"}) == (["a.b"], [])  # read, not listed
    assert params_mismatch(listed, {"a.c.d", "a.c.e", "g.h"}) == ([], ["f"])  # listed, not read


def test_a_stage_process_reports_what_it_read(tmp_path):
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"submit": {"rms_floor": 0.5, "out_dir": "x"}, "train": {"steps": 3}})
    )
    script = tmp_path / "stage.py"
    script.write_text(
        "from pipelines.common.params import load_params\n"
        f"p = load_params({str(tmp_path / 'params.yaml')!r})\n"
        "p.submit.rms_floor\n"
    )
    env = {
        **os.environ,
        TRACE_ENV: str(tmp_path / "trace"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
    }
    subprocess.run([sys.executable, str(script)], check=True, env=env)
    assert read_keys(tmp_path / "trace", "stage") == {"submit.rms_floor"}
    assert read_keys(tmp_path / "trace", "other") == set()
