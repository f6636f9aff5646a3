"""The sweep's processes: they end with it (kill -9), one sweep per results folder, a zygote that fails is
replaced by an interpreter per cell, and a non-smoke series runs only from committed code.

The kill -9 and zygote tests run real opt-tiny cells on the CPU (a few seconds each); the rest use the
fake launcher of test_sweep.py.
"""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from test_sweep import CPU_BOX, FakeLauncher, experiment, rows_of

from zo2bench import results
from zo2bench.cli import main as cli_main
from zo2bench.errors import UserError
from zo2bench.experiments import guard, launch, runner
from zo2bench.experiments.spec import load

ROOT = Path(__file__).resolve().parent.parent

TINY = """
cell_timeout_s = 600
[base]
device = "cpu"
[steps]
warmup = 0
measured = {measured}
[grid]
models = ["opt-tiny"]
modes = {modes}
dtypes = ["fp32"]
batches = [1]
seqs = [16]
"""


def tiny(tmp_path: Path, name: str = "tiny", measured: int = 1, modes=("mezo",)) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(TINY.format(measured=measured, modes=json.dumps(list(modes)))))
    return path


def alive(proc: psutil.Process | int) -> bool:
    try:
        proc = proc if isinstance(proc, psutil.Process) else psutil.Process(proc)
        return proc.status() != psutil.STATUS_ZOMBIE  # an orphan no one reaps has still ended
    except psutil.NoSuchProcess:
        return False


# -- kill -9 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("zygote", ["1", "0"], ids=["zygote", "interpreter"])
def test_kill_9_of_a_sweep_ends_its_cell_and_zygote_and_no_row_appears(tmp_path, zygote):
    toml = tiny(tmp_path, measured=5000)  # runs until killed (a few ms a step; all batches are made first)
    err_path = tmp_path / "stderr.txt"
    env = {**os.environ, "ZO2BENCH_ZYGOTE": zygote, "PYTHONPATH": str(ROOT)}
    with open(err_path, "w") as err:
        sweep = subprocess.Popen([sys.executable, "-m", "zo2bench", "sweep", str(toml), "--results-dir",
                                  str(tmp_path / "results"), "--allow-dirty"], stdout=subprocess.DEVNULL,
                                 stderr=err, env=env)
    try:
        deadline = time.monotonic() + 180
        while "| measured |" not in err_path.read_text():  # the cell is taking its steps
            assert sweep.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.2)
        started = psutil.Process(sweep.pid).children(recursive=True)
        assert len(started) == (2 if zygote == "1" else 1)  # the zygote and its cell, or the cell
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p.pid for p in started if alive(p)]
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    time.sleep(1.0)
    assert rows_of(tmp_path, "tiny") == []
    (store,) = (tmp_path / "results" / "tiny").iterdir()
    guard.SweepLock(store, wait_s=0).acquire().release()  # the dead sweep holds nothing


# -- one sweep per results folder ------------------------------------------------------------------

def test_a_second_sweep_on_the_same_folder_is_refused_naming_the_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "detect_machine", lambda: CPU_BOX)
    monkeypatch.setattr(runner, "launch_cell", FakeLauncher())
    exp = experiment(tmp_path)
    store = tmp_path / "results" / "toy" / "test-box"
    with guard.SweepLock(store, command="zo2bench sweep toy.toml (the first)"):
        with pytest.raises(UserError) as e:
            runner.sweep(exp, results_dir=tmp_path / "results", machine=CPU_BOX, stream=io.StringIO())
        message = str(e.value)
        assert f"{store} is in use by another sweep" in message and f"pid {os.getpid()}" in message
        assert socket.gethostname() in message and "zo2bench sweep toy.toml (the first)" in message
        assert "started 20" in message and "\n" not in message
        assert cli_main(["sweep", exp.file, "--results-dir", str(tmp_path / "results"), "--allow-dirty"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("zo2bench: error: ") and err.count("\n") == 1 and "in use by another sweep" in err
    assert rows_of(tmp_path) == []
    assert runner.sweep(exp, results_dir=tmp_path / "results", machine=CPU_BOX,
                        stream=io.StringIO())["counts"] == {"ok": 6}
    assert not (store / guard.LOCK_NAME).exists()  # let go at the end


def test_a_lock_file_left_by_a_dead_sweep_does_not_hold(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / guard.LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                                        "started_utc": "2026-01-01T00:00:00Z", "command": "x"}))
    with guard.SweepLock(tmp_path, wait_s=0) as lock:
        assert json.loads((tmp_path / guard.LOCK_NAME).read_text())["pid"] == os.getpid()
        assert lock.fd is not None


def test_the_lock_holds_while_a_process_of_the_dead_sweep_lives(tmp_path):
    """The lock is handed down to the sweep's processes: an orphan still running keeps the next sweep out."""
    path = tmp_path / guard.LOCK_NAME
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, json, os, sys, time
        fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({{"pid": 999999999, "host": {socket.gethostname()!r}, "started_utc": "t",
                                  "command": "zo2bench sweep x.toml"}}).encode())
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(UserError, match="has ended, but a cell or zygote it started still holds the lock"):
            guard.SweepLock(tmp_path, wait_s=0.5).acquire()
        assert time.monotonic() - t0 >= 0.5  # it gave the orphan time to end with its sweep
    finally:
        holder.kill()
        holder.wait()
    guard.SweepLock(tmp_path, wait_s=0).acquire().release()


# -- a zygote that fails -------------------------------------------------------------------------

def _fallbacks(text: str) -> int:
    return text.count("from now on each cell starts in a new interpreter")


def test_a_zygote_that_cannot_start_leaves_each_cell_its_own_interpreter(tmp_path, monkeypatch):
    monkeypatch.setattr(launch.Zygote, "argv", [sys.executable, "-c", "import sys; "
                                               "sys.stderr.write('fake zygote: cannot start\\n'); sys.exit(3)"])
    stream = io.StringIO()
    summary = runner.sweep(load(tiny(tmp_path, modes=("mezo", "zo2"))), results_dir=tmp_path / "results",
                           stream=stream)
    text = stream.getvalue()
    assert summary["counts"] == {"ok": 2} and summary["failed"] == 0, text
    assert _fallbacks(text) == 1 and "the zygote ended (exit status 3) before it could get ready" in text
    log = Path(summary["file"] + ".zygote.log")
    assert "fake zygote: cannot start" in log.read_text()
    assert f"its stderr is in {log} (last line: fake zygote: cannot start)" in text
    assert [r["status"] for r in rows_of(tmp_path, "tiny")] == ["ok", "ok"]


def test_a_zygote_that_dies_under_a_cell_is_replaced_and_the_cell_run_again(tmp_path, monkeypatch):
    """The fake zygote's child kills its zygote: the child ends with it, and the cell runs in an interpreter."""
    script, pid_file = tmp_path / "dying_zygote.py", tmp_path / "child.pid"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys, time
        from zo2bench.experiments import zygote

        def child(req):  # forked, its parent-death signal already set
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(1.0)  # the zygote has said it forked the cell
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(60)  # never reached: it dies with the zygote

        print("fake zygote: its first child will kill it", file=sys.stderr, flush=True)
        zygote._child = child
        zygote.main()
    """))
    monkeypatch.setattr(launch.Zygote, "argv", [sys.executable, str(script)])
    stream = io.StringIO()
    summary = runner.sweep(load(tiny(tmp_path)), results_dir=tmp_path / "results", stream=stream)
    text = stream.getvalue()
    assert summary["counts"] == {"ok": 1}, text
    assert _fallbacks(text) == 1 and "the zygote ended (exit status -9) while the cell ran" in text
    assert not alive(int(pid_file.read_text()))
    (row,) = rows_of(tmp_path, "tiny")  # one row: the interpreter's; the killed child wrote none
    assert row["status"] == "ok"
    assert "will kill it" in Path(summary["file"] + ".zygote.log").read_text()


def test_a_zygote_that_stops_answering_is_given_up(tmp_path, monkeypatch):
    monkeypatch.setattr(launch.Zygote, "argv", [sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(launch.Zygote, "ready_timeout_s", 1.0)
    zygote = launch.Zygote(tmp_path / "z.log")
    payload = {"header": {}, "results_file": str(tmp_path / "rows.jsonl"), "fingerprint": {}}
    outcome = launch.launch_cell(payload, timeout_s=60, on_event=lambda e: None, zygote=zygote)
    assert outcome["returncode"] is None and "did not get ready (import torch and transformers) within 1 s" in \
        outcome["zygote_failed"]
    assert outcome["zygote_failed"].endswith("it wrote nothing on stderr")
    assert zygote.proc.poll() is not None  # stopped, not left behind
    again = launch.launch_cell(payload, timeout_s=60, on_event=lambda e: None, zygote=zygote)
    assert again["zygote_failed"] == outcome["zygote_failed"]  # asked once only
    zygote.close()
    assert not (tmp_path / "z.log").exists()  # it said nothing: no empty log left


# -- committed code --------------------------------------------------------------------------------

def _git(root: Path, *args) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True,
                   capture_output=True)


def test_uncommitted_changes_to_the_package_are_found(tmp_path, monkeypatch):
    monkeypatch.delenv("ZO2BENCH_GIT_COMMIT", raising=False)
    monkeypatch.delenv("ZO2BENCH_GIT_DIRTY", raising=False)
    for name in ("zo2bench/a.py", "experiments/s.toml", "docs/d.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x\n")
    assert "not a git checkout" in guard.uncommitted_changes(tmp_path)
    monkeypatch.setenv("ZO2BENCH_GIT_DIRTY", "0")  # a copy without .git, said to be of a clean commit
    assert guard.uncommitted_changes(tmp_path) is None
    monkeypatch.delenv("ZO2BENCH_GIT_DIRTY")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "c")
    assert guard.uncommitted_changes(tmp_path) is None
    (tmp_path / "docs/d.md").write_text("y\n")  # not the package
    assert guard.uncommitted_changes(tmp_path) is None
    (tmp_path / "zo2bench/a.py").write_text("y\n")
    (tmp_path / "experiments/new.toml").write_text("y\n")
    assert "zo2bench/a.py" in guard.uncommitted_changes(tmp_path) and "experiments/new.toml" in \
        guard.uncommitted_changes(tmp_path)
    monkeypatch.setenv("ZO2BENCH_GIT_COMMIT", "abc123")  # the copier's word wins, as in the fingerprint
    monkeypatch.setenv("ZO2BENCH_GIT_DIRTY", "0")
    assert guard.uncommitted_changes(tmp_path) is None
    monkeypatch.setenv("ZO2BENCH_GIT_DIRTY", "1")
    assert "abc123" in guard.uncommitted_changes(tmp_path)


def test_a_series_from_uncommitted_code_is_refused_unless_allowed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "detect_machine", lambda: CPU_BOX)
    monkeypatch.setattr(guard, "uncommitted_changes", lambda: "uncommitted changes in /repo: zo2bench/a.py")
    exp = experiment(tmp_path)
    fake = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", fake)
    argv = ["sweep", exp.file, "--results-dir", str(tmp_path / "results")]
    assert cli_main(argv) == 2 and fake.calls == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "zo2bench/a.py" in err and "--allow-dirty" in err
    assert cli_main([*argv, "--dry-run"]) == 0  # lists, runs nothing: nothing to refuse

    assert cli_main([*argv, "--allow-dirty"]) == 0
    assert len(fake.calls) == 6 and all(r["allow_dirty"] is True for r in rows_of(tmp_path))

    smoke = experiment(tmp_path, name="smoke")  # the smoke test is for trying the path, committed or not
    assert cli_main(["sweep", smoke.file, "--results-dir", str(tmp_path / "results")]) == 0
    assert not any("allow_dirty" in r for r in rows_of(tmp_path, "smoke"))

    monkeypatch.setattr(guard, "uncommitted_changes", lambda: None)  # clean: the flag changes nothing
    assert cli_main([*argv, "--allow-dirty", "--force"]) == 0
    assert not any("allow_dirty" in r for r in results.latest_rows(rows_of(tmp_path)))
