"""One fine-tuning run through the engine: train loss every step, dev metrics at fixed intervals, test at the end.

    out = finetune(cfg, TaskData(train, dev, test, tokenizer), Schedule(eval_every=50), on_event=print)
    out["train_loss"]          # one per step (zo: the mean of loss+ and loss-, f(theta) to O(eps^2))
    out["dev_curve"]           # [{"step", "train_s", "energy_j", <metrics>, "eval_s"}], step 0 = before training
    out["test"]                # the final weights' test metrics (None after a divergence)

`cfg` is a RunConfig whose model is a pretrained directory (catalog.resolve loads it with from_pretrained)
and whose mode is any of zo2, mezo, fo-sgd, fo-adamw: every mode goes through engine.trainer.build_trainer
and the same step face, and evaluates through the trainer's logits (MeZO.logits flushes the pending update
first, which leaves a ZO run's trajectory bitwise unchanged, so zo2 and mezo give the same curve).

Batches: the training set is shuffled each epoch with the run's seed and cut into cfg.batch examples (the
last partial batch of an epoch is dropped). Clocks: `train_s` is the wall time of the training intervals
(making batches and stepping; each step ends by reading its loss, a device synchronisation), evaluation
excluded; `energy_j` is the GPU's energy over the same intervals (NVML; None without a GPU). A non-finite
loss stops the run ("diverged_at_step"): a learning rate too large for the model is a result, not an error.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from zo2bench.config import RunConfig
from zo2bench.tasks.encode import Encoder
from zo2bench.tasks.evaluate import MAX_NEW_TOKENS, evaluate
from zo2bench.tasks.examples import Example
from zo2bench.tasks.language import Rng, derive_seed
from zo2bench.tasks.tokenizer import TextTokenizer


@dataclass(frozen=True)
class TaskData:
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    tokenizer: TextTokenizer


@dataclass(frozen=True)
class Schedule:
    eval_every: int = 50         # steps between dev evaluations (and one before the first step, one after the last)
    eval_batch: int = 64         # examples per evaluation forward
    max_new_tokens: int = MAX_NEW_TOKENS   # QA: greedy decoding stops here or at end-of-sequence


def batches(train: list[Example], size: int, seed: int):
    """Endless batches: each epoch a new shuffle (seeded), cut into `size` examples."""
    size = min(size, len(train))
    rng = Rng(derive_seed("order", seed))
    while True:
        order = rng.shuffle(list(range(len(train))))
        for s in range(0, len(order) - size + 1, size):
            yield [train[i] for i in order[s:s + size]]


def _sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def finetune(cfg: RunConfig, data: TaskData, schedule: Schedule, energy=None,
             on_event: Callable[..., None] | None = None) -> dict:
    from zo2bench.engine.trainer import validate

    spec, dev, dtype = validate(cfg)
    with torch.cuda.device(dev) if dev.type == "cuda" else nullcontext():  # kernels and streams on its GPU
        return _finetune(cfg, spec, dev, dtype, data, schedule, energy, on_event)


def _finetune(cfg, spec, dev, dtype, data, schedule, energy, on_event) -> dict:
    from zo2bench.devices import device_name
    from zo2bench.engine.model import import_model_class
    from zo2bench.engine.trainer import build_trainer, params_digest

    emit = on_event or (lambda *a, **k: None)
    cfg = cfg.replace(device=device_name(dev), dtype=dtype)
    torch.manual_seed(cfg.seed)
    import_model_class(spec)
    t0 = time.perf_counter()
    trainer = build_trainer(cfg, spec, dev)
    _sync(dev)
    build_s = time.perf_counter() - t0
    enc = Encoder(data.tokenizer, cfg.seq)
    read_energy = energy.read if energy is not None else (lambda: None)

    clock = {"train_s": 0.0, "energy_j": 0.0 if read_energy() is not None else None}
    curve: list[dict] = []

    def dev_eval(step: int) -> dict:
        t = time.perf_counter()
        m = evaluate(data.dev, trainer.logits, enc, dev, schedule.eval_batch, schedule.max_new_tokens)
        _sync(dev)
        point = {"step": step, "train_s": round(clock["train_s"], 4),
                 "energy_j": None if clock["energy_j"] is None else round(clock["energy_j"], 3),
                 **{k: _round(v) for k, v in m.items()}, "eval_s": round(time.perf_counter() - t, 3)}
        curve.append(point)
        return point

    losses: list[float] = []
    diverged = None
    try:
        dev_eval(0)
        feed = batches(data.train, cfg.batch, cfg.seed)
        t_start, e_start = time.perf_counter(), read_energy()
        for t in range(cfg.steps):
            batch = enc.train_batch(next(feed), dev)
            loss = trainer.step(batch, t)["loss"].item()  # .item() waits for the step
            if not math.isfinite(loss):
                diverged = t
                break
            losses.append(_round(loss))
            emit("step", i=t + 1, total=cfg.steps, warmup=False, seconds=None)
            last = t + 1 == cfg.steps
            if (t + 1) % schedule.eval_every == 0 or last:
                _sync(dev)
                clock["train_s"] += time.perf_counter() - t_start
                e = read_energy()
                if clock["energy_j"] is not None and e is not None and e_start is not None:
                    clock["energy_j"] += e - e_start
                else:
                    clock["energy_j"] = None
                dev_eval(t + 1)
                t_start, e_start = time.perf_counter(), read_energy()
        test = None if diverged is not None else {
            k: _round(v) for k, v in evaluate(data.test, trainer.logits, enc, dev, schedule.eval_batch,
                                              schedule.max_new_tokens).items()}
        trainer.flush()
        _sync(dev)
        digest = params_digest(trainer.parameters())
    finally:
        trainer.close()
    return {
        "config": cfg.as_dict(), "build_seconds": round(build_s, 3), "steps_run": len(losses),
        "diverged_at_step": diverged, "train_loss": losses, "dev_curve": curve, "test": test,
        "train_examples": len(data.train), "dev_examples": len(data.dev), "test_examples": len(data.test),
        "truncated_examples": enc.truncated, "schedule": asdict(schedule), "final_params_sha256": digest,
    }
