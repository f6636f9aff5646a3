"""`zo2bench run`: one configuration, one JSON record.

    zo2bench run --model opt-125m --mode zo2 --steps 5 --batch 1 --seq 64 --dtype fp32 --seed 7 --device cpu --out r.json
"""
from __future__ import annotations

import statistics
import sys

from zo2bench.config import RunConfig
from zo2bench.errors import GPUOutOfMemory, NonFiniteLoss, UserError


def add_run_options(p, defaults: RunConfig = RunConfig()) -> None:
    """The RunConfig fields as options; shared by the commands that run one configuration."""
    p.add_argument("--model", default=defaults.model, help="catalog name (zo2bench list models) or local directory")
    p.add_argument("--mode", default=defaults.mode, help="mezo | zo2 | fo-sgd | fo-adamw")
    p.add_argument("--steps", type=int, default=defaults.steps, help="measured steps")
    p.add_argument("--warmup", type=int, default=defaults.warmup, help="steps before the measured ones")
    p.add_argument("--batch", type=int, default=defaults.batch)
    p.add_argument("--seq", type=int, default=defaults.seq, help="tokens per example")
    p.add_argument("--dtype", default=defaults.dtype, help="fp32 | fp16 | bf16")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--device", default=defaults.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--eps", type=float, default=defaults.eps)
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--prefetch", type=int, default=defaults.prefetch, help="zo2: blocks uploaded ahead")
    p.add_argument("--gpu-budget", dest="gpu_budget_gib", type=float, default=defaults.gpu_budget_gib,
                   metavar="GiB", help="zo2: keep as many blocks resident as fit in this much GPU memory")


def config_from_args(args) -> RunConfig:
    return RunConfig.from_dict(vars(args))


def register(sub) -> None:
    p = sub.add_parser("run", help="run one configuration and write its record")
    add_run_options(p, RunConfig(seq=64, steps=5))
    p.add_argument("--out", help="write the JSON record here (default: print a summary)")
    p.set_defaults(func=main)


def main(args) -> int:
    from zo2bench.measure import measured_run as run
    from zo2bench.results import write_json_atomic

    cfg = config_from_args(args)

    def progress(i, total, row):
        print(f"\rstep {i + 1}/{total}  {row['seconds'] * 1e3:8.1f} ms", end="", file=sys.stderr, flush=True)

    try:
        record = run(cfg, on_step=progress)
    except (GPUOutOfMemory, NonFiniteLoss) as e:
        print(file=sys.stderr)
        raise UserError(str(e)) from None
    print(file=sys.stderr)
    if args.out:
        write_json_atomic(args.out, record)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(summary(record))
    return 0


def summary(record: dict) -> str:
    c, m, steps = record["config"], record["model"], record["steps"]
    measured = [s for s in steps if not s["warmup"]] or steps
    med = statistics.median(s["seconds"] for s in measured)
    loss = [s.get("loss_plus", s.get("loss")) for s in measured]
    lines = [
        f"{m['name']} ({m['n_params'] / 1e6:,.1f} M params) mode={c['mode']} dtype={c['dtype']} "
        f"batch={c['batch']} seq={c['seq']} device={c['device']}",
        f"build {record['build']['seconds']:.2f} s; {len(measured)} measured steps, median {med * 1e3:.1f} ms, "
        f"{c['batch'] * c['seq'] / med:,.0f} tokens/s",
        f"loss first {loss[0]:.4f} last {loss[-1]:.4f}",
    ]
    peak = record["memory"]["measured"]["torch_peak_allocated_bytes"]
    if peak is not None:
        lines.append(f"peak torch-allocated {peak / 2**20:,.0f} MiB")
    lines.append(f"final params sha256 {record['final_params_sha256'][:16]}")
    return "\n".join(lines)
