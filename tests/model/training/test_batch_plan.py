"""The per-device batch of the paper recipe: 64 clips per update, the micro-batch as large as the memory allows."""

import pytest

from model.runtime.errors import InputError
from model.training import batch_plan
from model.training.batch_plan import plan_batch


def test_the_documented_table():
    rows = {p.memory_gib: (p.batch_size, p.accum_steps) for p in batch_plan.table()}
    assert rows == {24: (16, 4), 48: (32, 2), 80: (64, 1), 141: (64, 1)}
    assert all(p.effective == 64 for p in batch_plan.table())


def test_each_plan_fits_its_memory_and_the_next_batch_does_not():
    for memory in (12, 24, 33.3, 48, 80, 141):
        plan = plan_batch(memory)
        usable = (1 - batch_plan.RESERVE) * memory
        assert plan.estimated_peak_gib <= usable
        if plan.batch_size < 64:
            assert batch_plan.estimated_peak_gib(2 * plan.batch_size) > usable


def test_a_card_too_small_for_one_clip_is_a_user_error():
    with pytest.raises(InputError, match="does not fit one 323-frame clip"):
        plan_batch(4)
    assert plan_batch(6).batch_size == 1 and plan_batch(6).accum_steps == 64
