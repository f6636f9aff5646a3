"""Starting a sweep cell in a process of its own: forked from a zygote, or in a new interpreter.

    zygote = Zygote(log_path="results/.../20261123T081451Z.jsonl.zygote.log")   # starts at its first cell
    outcome = launch_cell(payload, timeout_s=600, on_event=print, zygote=zygote)
    outcome["done"]            # the cell's last event, {"event": "done", "status", ...}, or None if it died first
    outcome["zygote_failed"]   # why the zygote could not start this cell or died under it, else None
    zygote.close()

Every process started here dies with the process that started it (die_with_parent: PR_SET_PDEATHSIG on
Linux), so a `kill -9` of a sweep leaves no cell running to append a row behind its back; `pass_fds` hands
down the sweep's lock so that the lock is held while any of them is alive.
"""
from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import zo2bench

EVENT_PREFIX = "@zo2bench "  # a cell's progress lines on stdout; anything else it prints is not ours
STDERR_TAIL_LINES = 25
PARENT_ENV = "ZO2BENCH_DIE_WITH"  # the pid whose end ends this process; set for the processes started here
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ZygoteError(RuntimeError):
    """The zygote did not start, ended, or stopped answering: the caller starts cells another way."""


# -- processes that end with their parent ----------------------------------------------------------

def die_with(parent_pid: int) -> None:
    """Ask the kernel for SIGKILL when the parent ends (Linux); end now if it already has.

    Elsewhere there is no parent-death signal: only the check against the parent's pid remains.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent ended before the prctl: nobody would read our results
        os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent() -> None:
    """die_with() the pid named in ZO2BENCH_DIE_WITH, which is then cleared so it reaches no grandchild."""
    pid = os.environ.pop(PARENT_ENV, None)
    if pid:
        die_with(int(pid))


def cell_env() -> dict:
    env = dict(os.environ)  # the child imports this very package, wherever it was imported from
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(zo2bench.__file__).parent.parent),
                                                      env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env[PARENT_ENV] = str(os.getpid())
    return env


# -- the two ways to start a cell --------------------------------------------------------------------

class _Interpreter:
    """A cell in a new interpreter (where fork is unavailable, or the zygote failed)."""

    def __init__(self, payload: Path, stdout: Path, stderr: Path, pass_fds=()):
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "zo2bench.experiments.cell", "--payload", str(payload)],
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=cell_env(),
                                         pass_fds=tuple(pass_fds))
        self.zygote_failed = None

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Zygote:
    """One process that has imported torch and transformers, forking a fresh child per cell (zygote.py):
    a cell starts in a fraction of a second instead of the 12-13 s those imports take on the GPU machine.

    It starts with its first cell. Its stderr goes to `log_path` (appended); a log left empty is removed
    by close(). Any failure to start a cell raises ZygoteError and leaves the zygote stopped.
    """

    argv = [sys.executable, "-m", "zo2bench.experiments.zygote"]  # tests put a zygote that fails here
    ready_timeout_s = 300.0  # the imports: 12-13 s on the GPU machine, ~5 s on a 2-core CPU; 300 s is stuck
    reply_timeout_s = 60.0  # a fork and its reply take milliseconds

    def __init__(self, log_path: str | os.PathLike, pass_fds=()):
        self.log_path, self.pass_fds = Path(log_path), tuple(pass_fds)
        self.proc: subprocess.Popen | None = None
        self.replies: queue.Queue = queue.Queue()
        self.failed: str | None = None

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         env=cell_env(), text=True, pass_fds=self.pass_fds)
        threading.Thread(target=_pump, args=(self.proc.stdout, self.replies), daemon=True).start()
        self._reply(self.ready_timeout_s, "get ready (import torch and transformers)")

    def _reply(self, timeout_s: float, waiting_for: str) -> dict:
        try:
            line = self.replies.get(timeout=timeout_s)
        except queue.Empty:
            self._fail(f"the zygote did not {waiting_for} within {timeout_s:g} s")
        if line is None:
            self._fail(f"the zygote ended (exit status {self.proc.wait()}) before it could {waiting_for}")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            self._fail(f"the zygote said {line.strip()[:80]!r} instead of a JSON reply")

    def _fail(self, why: str):
        self.stop()
        self.failed = self.explain(why)
        raise ZygoteError(self.failed)

    def explain(self, why: str) -> str:
        """`why`, and where its stderr is kept (with its last line), or that it said nothing there."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return f"{why}; its stderr is in {self.log_path} (last line: {lines[-1][:200]})" if lines else \
            f"{why}; it wrote nothing on stderr"

    def start(self, payload: Path, stdout: Path, stderr: Path) -> _Forked:
        if self.failed:
            raise ZygoteError(self.failed)
        try:
            if self.proc is None:
                self._spawn()
            self.proc.stdin.write(json.dumps({"payload": str(payload), "stdout": str(stdout),
                                              "stderr": str(stderr)}) + "\n")
            self.proc.stdin.flush()
        except OSError as e:  # could not be started, or its stdin is closed (it ended)
            self._fail(f"the zygote could not take the cell ({type(e).__name__}: {e})")
        return _Forked(self, self._reply(self.reply_timeout_s, "fork the cell")["pid"])

    def stop(self) -> None:
        """End it now (a zygote that failed is not asked twice)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # end of requests: it returns
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.stop()
        if self.log_path.exists() and self.log_path.stat().st_size == 0:
            self.log_path.unlink()


class _Forked:
    """A cell forked by the zygote: its end is the zygote's second reply; the zygote's end is also its end."""

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote, self.pid, self.returncode = zygote, pid, None
        self.zygote_failed: str | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                line = self.zygote.replies.get_nowait()
            except queue.Empty:
                return None
            if line is None:  # the zygote ended under the cell (which ended with it, by its parent-death signal)
                self._lost(f"the zygote ended (exit status {self.zygote.proc.wait()}) while the cell ran")
            else:
                self.returncode = json.loads(line)["returncode"]
        return self.returncode

    def _lost(self, why: str) -> None:
        try:  # where there is no parent-death signal the cell may live on
            os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.zygote.stop()
        self.zygote_failed = self.zygote.failed = self.zygote.explain(why)
        self.returncode = -signal.SIGKILL

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + self.zygote.reply_timeout_s
        while self.poll() is None:
            if time.monotonic() > deadline:
                self._lost(f"the zygote did not report the killed cell's end within {self.zygote.reply_timeout_s:g} s")
            time.sleep(0.05)


def _pump(stream, lines: queue.Queue) -> None:
    """Lines of a child's stdout into a queue (None at its end), so the parent can also watch the clock."""
    for line in stream:
        lines.put(line)
    lines.put(None)


# -- one cell, watched to its end --------------------------------------------------------------------

def launch_cell(payload: dict, timeout_s: float, on_event: Callable[[dict], None], zygote: Zygote | None = None,
                pass_fds=()) -> dict:
    """Run zo2bench.experiments.cell in a fresh process (forked from `zygote` when given, else a new
    interpreter), relaying its progress lines to on_event.

    Returns {"returncode", "timed_out", "stderr_tail", "done", "zygote_failed"} where "done" is the cell's last
    event (with its status) or None when it died before saying so, and "zygote_failed" says why the zygote
    could not start the cell (returncode None: nothing ran) or died under it; then start it some other way.
    """
    with tempfile.TemporaryDirectory(prefix="zo2bench-cell-") as tmp:
        paths = [Path(tmp) / name for name in ("payload.json", "stdout.txt", "stderr.txt")]
        paths[0].write_text(json.dumps(payload, default=str))
        paths[1].touch(), paths[2].touch()
        if zygote is not None:
            if zygote.proc is None and not zygote.failed:
                on_event({"event": "phase", "phase": "zygote: importing torch and transformers (once)"})
            try:
                proc = zygote.start(*paths)
            except ZygoteError as e:
                return {"returncode": None, "timed_out": False, "done": None, "stderr_tail": "",
                        "zygote_failed": str(e)}
        else:
            proc = _Interpreter(*paths, pass_fds=pass_fds)
        done, timed_out, seen = None, False, 0
        deadline = time.monotonic() + timeout_s
        try:  # files, not pipes: a chatty child can never block on them
            while True:
                rc = proc.poll()
                text = paths[1].read_text(errors="replace")
                complete = text[: text.rfind("\n") + 1]
                for line in complete[seen:].splitlines():
                    if line.startswith(EVENT_PREFIX):
                        try:
                            event = json.loads(line[len(EVENT_PREFIX):])
                        except json.JSONDecodeError:
                            continue
                        done = event if event.get("event") == "done" else done
                        on_event(event)
                seen = len(complete)
                if rc is not None:
                    break
                on_event({"event": "tick"})  # refreshes elapsed time and the estimate
                if time.monotonic() > deadline:
                    timed_out = True
                    proc.kill()
                    continue
                time.sleep(0.2)
        except BaseException:  # Ctrl-C reaches the child too; make sure it is gone before we go
            proc.kill()
            raise
        tail = paths[2].read_text(errors="replace").rstrip().splitlines()
    if rc in (-signal.SIGINT, 130) and done is None:
        raise KeyboardInterrupt
    return {"returncode": rc, "timed_out": timed_out, "done": done,
            "stderr_tail": "\n".join(tail[-STDERR_TAIL_LINES:]), "zygote_failed": proc.zygote_failed}
