"""`zo2bench run`: one configuration, one JSON record, and a summary on the screen.

    zo2bench run --model opt-125m --mode zo2 --steps 5 --seq 64 --device cpu --out r.json
    zo2bench run --model opt-tiny --device cpu                 # the summary only
    zo2bench run --model opt-tiny --device cpu --out - | jq .  # the record on stdout, the summary on stderr
    zo2bench run --model opt-13b --mode zo2 --batch 8 --nproc-per-node 4 --dp 2 --pert 2   # 4 GPUs, one record
    torchrun --nproc-per-node 4 -m zo2bench run --model opt-13b ...                       # the same, by hand

Distributed runs (docs/distributed.md): --nproc-per-node N starts N ranks through torch.distributed.run;
inside ranks that torchrun started, the run is distributed and rank 0 alone prints and writes the record.
Progress (the library import, the build, each step) goes to stderr. The summary goes to stdout, or to
stderr when the record does. --out is checked before anything runs; if writing it still fails at the
end, the record is printed on stdout instead and the exit status is 1.
"""
from __future__ import annotations

import statistics
import sys
import time

from zo2bench.config import RunConfig
from zo2bench.errors import GPUOutOfMemory, NonFiniteLoss, UserError
from zo2bench.paths import deliver, writable_file


def add_run_options(p, defaults: RunConfig | None = None) -> None:
    """The RunConfig fields as options; shared by the commands that run one configuration."""
    d = defaults or RunConfig()
    p.add_argument("--model", default=d.model, help="catalog name (zo2bench list models) or local directory")
    p.add_argument("--mode", default=d.mode, help="mezo | zo2 | fo-sgd | fo-adamw")
    p.add_argument("--steps", type=int, default=d.steps, help="measured steps")
    p.add_argument("--warmup", type=int, default=d.warmup, help="steps before the measured ones, reported apart")
    p.add_argument("--batch", type=int, default=d.batch, help="examples per step")
    p.add_argument("--seq", type=int, default=d.seq, help="tokens per example")
    p.add_argument("--dtype", default=d.dtype, help="fp32 | fp16 | bf16 | auto: fp16 on a GPU, fp32 on a CPU")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the weights, the data and the perturbations")
    p.add_argument("--device", default=d.device, help="auto (CUDA if there is a GPU, else cpu) | cpu | cuda | cuda:N")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    p.add_argument("--eps", type=float, default=d.eps, help="ZO modes: perturbation scale")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="not applied to biases and norms")
    p.add_argument("--prefetch", type=int, default=d.prefetch, help="zo2: blocks uploaded ahead")
    p.add_argument("--writeback-every", type=int, default=d.writeback_every, metavar="K",
                   help="zo2: copy each streamed block back to host memory every K-th step, replaying the "
                        "updates in between on upload (bitwise the same weights; 1/K of the offload traffic)")
    p.add_argument("--cuda-graphs", action="store_true", default=d.cuda_graphs,
                   help="mezo on CUDA: capture a step once and replay it (bitwise the same weights; for "
                        "launch-bound steps: small batches, short sequences); the first two steps run eagerly")
    p.add_argument("--gpu-budget", dest="gpu_budget_gib", type=float, default=d.gpu_budget_gib, metavar="GiB",
                   help="zo2: keep as many blocks resident as fit in this much GPU memory "
                        "(default: none resident, every block streams)")


def add_distributed_options(p, d: RunConfig) -> None:
    g = p.add_argument_group("distributed (ZO modes; docs/distributed.md)")
    g.add_argument("--nproc-per-node", type=int, default=d.nproc_per_node, metavar="N",
                   help="ranks on this host, one a GPU, started through torch.distributed.run")
    g.add_argument("--dp", type=int, default=d.dp, help="data-parallel degree; 0 picks world size / --pert")
    g.add_argument("--pert", type=int, default=d.pert,
                   help="perturbation-parallel degree, 1 or 2; 0 picks 2 where the world size is even")
    g.add_argument("--weight-shard", type=int, default=d.weight_shard, metavar="N",
                   help="ranks of a host that split each block and all-gather it; 1: none; 0 picks every rank "
                        "of the host for zo2 (one shared host copy), 1 for mezo")
    g.add_argument("--dp-reduce", default=d.dp_reduce,
                   help="rows: per-token losses gathered and summed in the one-process order; scalars: two all-reduced "
                        "losses a step")


def config_from_args(args) -> RunConfig:
    return RunConfig.from_dict(vars(args))


def register(sub) -> None:
    p = sub.add_parser("run", help="run one configuration and write its record", description=__doc__.split("\n\n")[0])
    add_run_options(p, RunConfig(seq=64, steps=5))
    add_distributed_options(p, RunConfig())
    p.add_argument("--out", metavar="FILE.json",
                   help="write the JSON record here; '-' prints it on stdout (default: only the summary)")
    p.set_defaults(func=main)


class StepProgress:
    """Phases and steps on stderr: one rewritten line on a terminal, a line every few seconds elsewhere."""

    def __init__(self, prefix: str, stream=None):
        self.prefix, self.stream = prefix, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last, self.open_line = 0.0, False

    def say(self, text: str) -> None:
        self.end_line()
        print(f"{self.prefix}: {text}", file=self.stream, flush=True)

    def phase(self, name: str) -> None:
        names = {"build": "building the model", "warmup": "warm-up steps", "measured": "measured steps"}
        self.say(names.get(name, name))

    def step(self, i: int, total: int, row: dict) -> None:
        text = f"{self.prefix}: step {i + 1}/{total}  {row['seconds'] * 1e3:8.1f} ms"
        if self.tty:
            print(f"\r{text}", end="", file=self.stream, flush=True)
            self.open_line = True
        elif i + 1 == total or time.monotonic() - self.last >= 5.0:
            self.last = time.monotonic()
            print(text, file=self.stream, flush=True)

    def end_line(self) -> None:
        if self.open_line:
            print(file=self.stream, flush=True)
            self.open_line = False


def main(args) -> int:
    writable_file(args.out, "--out")
    from zo2bench.distributed.parallel import World

    if World.launched():
        return _main_rank(args)
    cfg = config_from_args(args)
    if cfg.nproc_per_node > 1:
        return _launch(cfg, args.out)
    progress = StepProgress("run")
    progress.say("importing torch and transformers (a few seconds, about 10 s on some machines)")
    from zo2bench.devices import device_name, resolve_device, resolve_dtype
    from zo2bench.measure import measured_run as run

    cfg = config_from_args(args)
    dev = resolve_device(cfg.device)  # what "auto" means here, shown before the minutes it may take
    refuse_infeasible(cfg.replace(device=device_name(dev)), args.out)
    progress.say(f"{cfg.model} mode={cfg.mode} dtype={resolve_dtype(cfg.dtype, dev)} batch={cfg.batch} "
                 f"seq={cfg.seq} device={device_name(dev)}: {cfg.warmup} warm-up and {cfg.steps} measured steps")
    try:
        record = run(cfg, on_phase=progress.phase, on_step=progress.step)
    except (GPUOutOfMemory, NonFiniteLoss) as e:
        raise UserError(str(e)) from None
    finally:
        progress.end_line()
    return deliver(record, args.out, summary(record))


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
    g = record.get("cuda_graphs")
    if g:
        lines.append(f"CUDA graphs: not captured ({g['capture_error']}), every step eager" if g.get("capture_error")
                     else f"CUDA graphs: {g['replays']} steps replayed, {g['eager_steps']} eager "
                          "(peak torch-allocated leaves out the graph's pool)")
    d = record.get("distributed")
    if d:
        lines.append(f"{d['world_size']} ranks, {d['strategy']} ({d['backend']}); step time: the slowest rank's; "
                     "peak: the largest rank's")
    lines.append(f"final params sha256 {record['final_params_sha256'][:16]}")
    return "\n".join(lines)


def refuse_infeasible(cfg: RunConfig, out: str | None, kind: str = "run", ranks_per_host: int | None = None,
                      weight_shard: int | None = None) -> None:
    """Host memory checked before anything is built or pinned (probes/hostmem.py); cfg's device resolved.
    Where it cannot fit: a record with status "infeasible" and both figures to `out`, then one line, exit 2."""
    from zo2bench.probes.hostmem import host_feasibility
    from zo2bench.results import SCHEMA_VERSION

    verdict = host_feasibility(cfg, ranks_per_host=ranks_per_host, weight_shard=weight_shard)
    if verdict is None:
        return
    if out:
        from zo2bench.paths import save_record

        save_record({"schema_version": SCHEMA_VERSION, "kind": kind, "status": "infeasible",
                     "reason": verdict["reason"], "config": cfg.as_dict(), "feasibility": verdict}, out)
    raise UserError(f"infeasible: {verdict['reason']}")


def prepare_launch(cfg: RunConfig, out: str | None, kind: str = "run"):
    """Everything that can be refused is refused here, before N processes start; returns the degrees."""
    from zo2bench.config import check
    from zo2bench.distributed.measure import resolve
    from zo2bench.distributed.parallel import World

    check(cfg)
    from zo2bench import catalog

    spec = catalog.resolve(cfg.model)
    if cfg.seq > spec.positions:
        raise UserError(f"--seq {cfg.seq} is longer than {spec.name}'s {spec.positions} positions")
    n = cfg.nproc_per_node
    dims, device = resolve(cfg, World(0, n, 0, n))
    refuse_infeasible(cfg.replace(device=device.split(":")[0]), out, kind, ranks_per_host=n, weight_shard=dims.weight)
    print(f"{kind}: starting {n} ranks ({dims.strategy}) through torch.distributed.run", file=sys.stderr, flush=True)
    return dims


def _launch(cfg: RunConfig, out: str | None) -> int:
    from zo2bench.distributed.launch import relaunch

    prepare_launch(cfg, out)
    return relaunch(cfg, out)


def _main_rank(args) -> int:
    """One rank of a distributed run (torchrun's environment is set): rank 0 prints and delivers."""
    from zo2bench.distributed.measure import run_rank
    from zo2bench.distributed.parallel import World
    from zo2bench.experiments.launch import die_with_parent

    die_with_parent()  # started by relaunch(): ends with the process that started it
    world = World.from_env()
    cfg = config_from_args(args)
    if cfg.nproc_per_node not in (1, world.local_size):
        raise UserError(f"--nproc-per-node {cfg.nproc_per_node}, but torchrun started {world.local_size} "
                        "ranks on this host")
    lead = world.rank == 0
    progress = StepProgress(f"run[rank 0 of {world.size}]", stream=None if lead else _Null())
    try:
        record = run_rank(cfg, world, on_phase=progress.phase, on_step=progress.step)
    except (GPUOutOfMemory, NonFiniteLoss) as e:
        raise UserError(str(e)) from None
    finally:
        progress.end_line()
    return deliver(record, args.out, summary(record)) if lead else 0


class _Null:
    def write(self, text):
        pass

    def flush(self):
        pass

    def isatty(self):
        return False
