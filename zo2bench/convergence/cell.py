"""One convergence cell: the data and the pretrained model (from the cache, or made now), then one fine-tuning run.

    row = run_cell(payload, emit)     # called by zo2bench/experiments/cell.py for a header with "convergence"

The header (experiments/runner.py) holds the RunConfig of the run (its model is a ladder name, its seed the
repeat's) and the cell's settings (convergence/plan.py: task, k, data and pretraining recipes, evaluation).
The row adds:
    "pretrained": {name, digest, weights_sha256, built_now, train_s, heldout_loss, tokens, ...}; None for a
                  task with files (convergence/files.py), whose model directory is fine-tuned as it is
    "data": {digest, generator_version, tokenizer_sha256, train_examples (the k-shot set's size)}, or for files
            {files, files_sha256, template, train_examples}
    "finetune": {steps_run, diverged_at_step, train_loss (every step), dev_curve, test, final_params_sha256,
                 build_seconds, truncated_examples, schedule}
    "energy": {"measured": bool, "why": None or why not (no GPU, no NVML)}
    "gpu_peak_allocated_bytes": the torch allocator's peak over fine-tuning (None on the CPU)
Statuses as the sweep's other cells: ok (a diverged run included: it is a result), oom, error.
"""
from __future__ import annotations

import os
import time
import traceback

from zo2bench import results
from zo2bench.config import RunConfig
from zo2bench.errors import GPUOutOfMemory, UserError


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_cell(payload: dict, emit) -> dict:
    header = payload["header"]
    s = header["convergence"]
    cfg = RunConfig.from_dict(header["config"])
    # cuBLAS reproducibility for pretraining (pretrain.py asks for deterministic algorithms): it must be set
    # before CUDA starts in this process.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    started, t0 = _utc(), time.monotonic()
    status, reason, fields = "ok", None, {}
    try:
        fields = _run(cfg, s, emit)
    except GPUOutOfMemory as e:
        status, reason, fields = "oom", str(e), {"oom": e.as_dict()}
    except UserError as e:
        status, reason = "error", str(e)
    except Exception:
        status, reason = "error", "".join(traceback.format_exc().splitlines(True)[-20:])
    from zo2bench.probes.fingerprint import fingerprint

    return results.sweep_row(header, status, reason, **fields, fingerprint=fingerprint(cfg.device),
                             started_utc=started, finished_utc=_utc(), wall_s=round(time.monotonic() - t0, 3))


def _run(cfg: RunConfig, s: dict, emit) -> dict:
    import torch

    from zo2bench.convergence.energy import EnergyMeter
    from zo2bench.convergence.finetune import Schedule, TaskData, finetune
    from zo2bench.convergence.pretrain import PretrainRecipe, pretrained
    from zo2bench.probes.torchmem import read_peak, reset_peak
    from zo2bench.tasks.cache import file_sha256
    from zo2bench.tasks.examples import k_shot
    from zo2bench.tasks.synthetic import GENERATOR_VERSION, DataRecipe, build

    task = s["task"]
    spec = (s.get("files") or {}).get(task)
    if spec is not None:  # real data and a real model directory: no pretraining
        from zo2bench.convergence.files import digests, splits
        from zo2bench.tasks.tokenizer import load_tokenizer

        emit("phase", phase=f"data: {task} from files")
        parts, tok = splits(spec, task), load_tokenizer(cfg.model)
        train = k_shot(parts["train"], s["shots"], cfg.seed)
        task_data = TaskData(train, parts["dev"][:s["dev_examples"]], parts["test"][:s["test_examples"]], tok)
        pre, data_info, model_dir = None, {"files": {k: spec[k] for k in ("train", "dev", "test")},
                                           "files_sha256": digests(spec), "template": spec}, cfg.model
    else:
        emit("phase", phase="data")
        data = build(DataRecipe.from_dict(s["data"]))
        emit("phase", phase=f"pretrained {cfg.model}")

        def progress(i: int, n: int, loss: float) -> None:
            emit("phase", phase=f"pretraining {cfg.model}: step {i}/{n}, loss {loss:.3f}")

        pre = pretrained(cfg.model, PretrainRecipe.from_dict(s["pretrain"]), data, cfg.device,
                         on_progress=progress)
        train = k_shot(data.split(task, "train"), s["shots"], cfg.seed)
        task_data = TaskData(train, data.split(task, "dev")[:s["dev_examples"]],
                             data.split(task, "test")[:s["test_examples"]], data.tokenizer)
        data_info = {"digest": data.digest, "generator_version": GENERATOR_VERSION,
                     "tokenizer_sha256": file_sha256(data.path / "tokenizer.json")}
        model_dir = str(pre.path)
    schedule = Schedule(eval_every=s["eval_every"], eval_batch=s["eval_batch"])
    energy = EnergyMeter(cfg.device)
    reset_peak(cfg.device)
    try:
        emit("phase", phase=f"fine-tuning ({cfg.mode}, lr {cfg.lr:g})")
        out = finetune(cfg.replace(model=model_dir), task_data, schedule, energy, on_event=emit)
    finally:
        energy.close()
    peak = read_peak(cfg.device).get("torch_peak_allocated_bytes")  # None on the CPU
    out.pop("config")
    return {
        "pretrained": None if pre is None else {
            "name": pre.name, "path": str(pre.path), "digest": pre.path.name, "built_now": pre.built_now,
            **{k: pre.info.get(k) for k in ("n_params", "weights_sha256", "steps", "tokens", "peak_lr", "dtype",
                                            "train_s", "heldout_loss", "loss_last", "device")}},
        "data": {**data_info, "train_examples": len(train)},
        "finetune": out,
        "energy": {"measured": energy.why is None, "why": energy.why},
        "gpu_peak_allocated_bytes": peak,
        "torch_threads": torch.get_num_threads(),
    }
