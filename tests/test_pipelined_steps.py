"""The trainer's step loop: step t+1 is queued before step t's losses are read, phases start from an idle
device, step seconds add up to the loop's wall time, and a non-finite loss stops the run naming its step."""
import math
import time

import pytest
import torch

from zo2bench.config import RunConfig
from zo2bench.engine.trainer import run
from zo2bench.errors import NonFiniteLoss


class _Loss:
    def __init__(self, log, t, value):
        self.log, self.t, self.value = log, t, value

    def item(self):
        self.log.append(f"read {self.t}")
        return self.value


class _Trainer:
    """build_trainer's face, logging the order of launches and reads."""

    def __init__(self, log, bad_at=None, step_s=0.0):
        self.log, self.bad_at, self.step_s = log, bad_at, step_s

    def step(self, batch, t):
        self.log.append(f"step {t}")
        time.sleep(self.step_s)
        return {"loss": _Loss(self.log, t, math.nan if t == self.bad_at else 1.0)}

    def flush(self):
        self.log.append("flush")

    def parameters(self):
        return [torch.zeros(1)]

    def offload_info(self):
        return {}

    def close(self):
        self.log.append("close")


def _run(log, **kw):
    cfg = RunConfig(model="opt-tiny", mode="mezo", steps=3, warmup=2, batch=1, seq=8, dtype="fp32", device="cpu")
    trainer = _Trainer(log, **kw)
    return run(cfg, on_phase=lambda name: log.append(name), builder=lambda *a: trainer)


def test_next_step_is_queued_before_the_losses_are_read_and_phases_drain():
    log = []
    rec = _run(log)
    assert log == ["build", "warmup", "step 0", "step 1", "read 0", "read 1", "measured", "step 2", "step 3",
                   "read 2", "step 4", "read 3", "read 4", "done", "flush", "close"]
    assert [s["step"] for s in rec["steps"]] == [0, 1, 2, 3, 4]


def test_step_seconds_add_up_to_the_loop_time():
    t0 = time.perf_counter()
    rec = _run([], step_s=0.02)
    wall = time.perf_counter() - t0
    seconds = [s["seconds"] for s in rec["steps"]]
    assert all(s >= 0.019 for s in seconds)  # each interval holds at least its own step's launch
    assert sum(seconds) <= wall


def test_a_non_finite_loss_names_its_step_and_keeps_the_rows_before():
    log, rows = [], []
    cfg = RunConfig(model="opt-tiny", mode="mezo", steps=3, warmup=2, batch=1, seq=8, dtype="fp32", device="cpu")
    trainer = _Trainer(log, bad_at=3)
    with pytest.raises(NonFiniteLoss) as err:
        run(cfg, on_step=lambda i, n, row: rows.append(row["step"]), builder=lambda *a: trainer)
    assert err.value.step == 3
    assert rows == [0, 1, 2]
    assert log[-1] == "close"


@pytest.mark.gpu
def test_gpu_pipelined_zo2_steps_carry_their_own_times_and_lanes():
    cfg = RunConfig(model="opt-tiny", mode="zo2", steps=4, warmup=1, batch=2, seq=64, dtype="fp16", device="cuda")
    rec = run(cfg, timing=True)
    for row in rec["steps"]:
        assert row["seconds"] > 0
        assert row["lanes_ms"]["upload"] > 0 and row["lanes_ms"]["compute"] > 0
    assert rec["step_timing"] == "pipelined"
