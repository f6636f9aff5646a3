"""What must hold before a sweep writes a row: no other sweep on its results folder, and committed code.

    with SweepLock("results/smoke/cpu-amd-epyc-2c", command="zo2bench sweep experiments/smoke.toml") as lock:
        ...                        # UserError naming the holder (pid, host, start, command) if another sweep has it
        lock.fd                    # handed down to the sweep's processes: the lock lasts while any of them lives
    uncommitted_changes()          # None when zo2bench/ and experiments/ are committed, else what is not, in a line

The lock is an fcntl lock on RESULTS/<series>/<machine>/.sweep.lock: the kernel drops it when the last
process holding it ends, however it ends, so a dead sweep never keeps it. The file names its holder.
"""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import zo2bench
from zo2bench.errors import UserError

LOCK_NAME = ".sweep.lock"
PACKAGE_PATHS = ("zo2bench", "experiments")  # what makes a row: the package and the experiment files


class SweepLock:
    """An exclusive, non-waiting lock on one results folder (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, command: str | None = None, wait_s: float = 5.0):
        self.folder, self.path = Path(folder), Path(folder) / LOCK_NAME
        self.command = command or _command_line()
        self.wait_s = wait_s  # for a holder that has ended while the processes it started end with it
        self.fd: int | None = None

    def acquire(self) -> SweepLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait_s
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                ended = holder.get("host") == socket.gethostname() and not _alive(holder.get("pid"))
                if ended and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                raise UserError(_in_use(self.folder, holder, ended)) from None
            try:  # a holder removes the file as it lets go: the lock must be on the file that is there now
                current = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                current = False
            if not current:
                os.close(fd)
                continue
            me = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": self.command}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            self.fd = fd
            return self

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held, so no one locks a file about to vanish
        os.close(self.fd)
        self.fd = None
        for folder in (self.folder, self.folder.parent):  # a sweep that wrote nothing leaves no empty folder
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> SweepLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _command_line() -> str:
    name = Path(sys.argv[0]).name
    return shlex.join(["zo2bench" if name in ("zo2bench", "__main__.py") else name, *sys.argv[1:]])


def _holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode(errors="replace") or "{}")
    except json.JSONDecodeError:  # caught between its truncate and its write
        holder = {}
    return holder if isinstance(holder, dict) else {}


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return True  # cannot tell: do not wait
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has ended
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_use(folder: Path, holder: dict, ended: bool) -> str:
    who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started_utc', '?')}: "
           f"{holder.get('command', '?')}") if holder else "holder unknown"
    then = ("; that process has ended, but a cell or zygote it started still holds the lock" if ended else
            "; wait for it to end or stop it")
    return f"{folder} is in use by another sweep ({who}){then}"


def package_root() -> Path:
    return Path(zo2bench.__file__).resolve().parent.parent


def uncommitted_changes(root: Path | None = None) -> str | None:
    """None when the code a sweep runs is known to be committed, else why not (one line).

    Like the fingerprint (probes/fingerprint.py): ZO2BENCH_GIT_COMMIT, when set, is believed together with
    ZO2BENCH_GIT_DIRTY=1/0 over any .git; a copy without .git is clean when ZO2BENCH_GIT_DIRTY=0 says so.
    """
    if os.environ.get("ZO2BENCH_GIT_COMMIT"):
        if os.environ.get("ZO2BENCH_GIT_DIRTY") == "1":
            return f"ZO2BENCH_GIT_DIRTY=1: commit {os.environ['ZO2BENCH_GIT_COMMIT']} with uncommitted changes"
        return None
    root = root or package_root()
    if not (root / ".git").exists():
        if os.environ.get("ZO2BENCH_GIT_DIRTY") == "0":
            return None
        return (f"{root} is not a git checkout, so the commit that runs is unknown (a copy of a clean commit: "
                f"set ZO2BENCH_GIT_COMMIT=<sha> ZO2BENCH_GIT_DIRTY=0)")
    try:
        out = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", *PACKAGE_PATHS],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"`git status` failed in {root} ({type(e).__name__}), so whether the code is committed is unknown"
    changed = [line[3:] for line in out.splitlines() if line.strip()]
    if not changed:
        return None
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"uncommitted changes in {root}: {shown}"
