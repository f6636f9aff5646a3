"""A process that imports torch and transformers once, then forks a fresh child for each sweep cell.

    python -m zo2bench.experiments.zygote    # started by the runner; requests on stdin, ends at EOF

Importing torch and transformers takes 12-13 s on the GPU machine (sympy through torch.distributed,
torch._dynamo, scikit-learn through transformers' generation code), more than most cells run. A child
forked from this process starts with all of that imported and nothing else: no CUDA context (the parent
never touches the GPU), no weights, no allocator state, so its peaks are its own and a crash ends only it.
The zygote ends with the sweep that started it, and each child with the zygote (launch.die_with), so that
no cell outlives its sweep; Ctrl-C reaches the child, which ends, and the zygote reports it.

Ready, one JSON line:   {"ready": true, "pid": N} once the imports are done; then, for each request:
Request, one JSON line: {"payload": PATH, "stdout": PATH, "stderr": PATH}
Replies, JSON lines:    {"pid": N} once forked, then {"pid": N, "returncode": R} when the child has ended.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import traceback

from zo2bench.experiments.launch import die_with, die_with_parent


def preload() -> None:
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from zo2bench import catalog
    from zo2bench.engine import model, noise, offload, trainer, zo  # noqa: F401
    from zo2bench.experiments import cell  # noqa: F401
    from zo2bench.probes import ProbeSet  # noqa: F401

    for name in ("opt-tiny", "llama-tiny", "qwen-tiny"):  # the Hugging Face modeling code of each family
        model.import_model_class(catalog.get(name))


def _child(req: dict) -> int:
    from zo2bench.experiments import cell

    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    try:
        return int(cell.main(["--payload", req["payload"]]) or 0)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1


def main() -> int:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the child; the zygote stays to report its end
    preload()
    reply = sys.stdout
    reply.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    reply.flush()
    me = os.getpid()
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                die_with(me)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                code = _child(req)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        reply.write(json.dumps({"pid": pid}) + "\n")
        reply.flush()
        _, status = os.waitpid(pid, 0)
        reply.write(json.dumps({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        reply.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
