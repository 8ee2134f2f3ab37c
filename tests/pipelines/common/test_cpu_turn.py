import logging
import signal
import threading
import time

import pytest

from pipelines.common.cpu_turn import LOCK_NAME, cpu_turn, lock_path
from tests.pipelines.common.turn_holder import hold_turn, under_dvc


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A stage's environment under DVC: $DVC_ROOT names the user's checkout."""
    return under_dvc(monkeypatch, tmp_path)


def test_a_stage_waits_while_another_experiment_holds_the_turn_and_names_it(checkout, caplog):
    holder = hold_turn(checkout, 1.5, experiment="q-cfg2")
    with caplog.at_level(logging.INFO, logger="pipelines.common.cpu_turn"):
        with cpu_turn("generate") as turn:
            pass
    holder.wait()
    assert turn.lock == checkout / ".dvc" / "tmp" / LOCK_NAME
    assert turn.waited_s >= 1.0
    waiting = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(waiting) == 1
    assert f"stage train in experiment q-cfg2, pid {holder.pid}" in waiting[0]
    # a free turn is taken at once, and the block's holder is written for the next waiter to name
    with cpu_turn("evaluate") as again:
        assert '"stage": "evaluate"' in turn.lock.read_text()
    assert again.waited_s < 0.5


def test_a_killed_holder_never_blocks_the_next_stage(checkout):
    holder = hold_turn(checkout, 600)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    done = []

    def take():
        with cpu_turn("generate") as turn:
            done.append(turn.waited_s)

    worker = threading.Thread(target=take, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert done and done[0] < 1.0


def test_no_turn_outside_dvc_off_the_cpu_or_when_switched_off(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("FLOWJAM_CPU_TURN", raising=False)
    assert lock_path() is None
    with cpu_turn("generate") as turn:
        assert turn.lock is None and turn.waited_s == 0
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    holder = hold_turn(tmp_path, 600)
    try:
        start = time.monotonic()
        with cpu_turn("generate", on_cpu=False) as turn:  # a CUDA device: no turn, no wait
            assert turn.lock is None
        monkeypatch.setenv("FLOWJAM_CPU_TURN", "off")
        with cpu_turn("generate") as turn:
            assert turn.lock is None
        assert time.monotonic() - start < 1.0
    finally:
        holder.kill()
        holder.wait()
