"""noxfile.py: one shared environment, set up once and reused while nothing it was built from changed, and
torch pinned before anything else is installed. nox itself is replaced by a stand-in (it is not in the test
environment), and the commands are recorded instead of run."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

NOXFILE = Path(__file__).resolve().parents[1] / "noxfile.py"


class FakeSession:
    def __init__(self, posargs=()):
        self.posargs, self.commands, self.logs = list(posargs), [], []

    def run(self, *args, **kwargs):
        self.commands.append(list(args))

    def log(self, text):
        self.logs.append(text)


@pytest.fixture
def noxfile(tmp_path, monkeypatch):
    fake = types.ModuleType("nox")
    fake.options = types.SimpleNamespace(sessions=None)
    fake.session = lambda *a, **k: (a[0] if a and callable(a[0]) else (lambda f: f))
    monkeypatch.setitem(sys.modules, "nox", fake)
    monkeypatch.delenv("ZO2BENCH_TORCH", raising=False)
    spec = importlib.util.spec_from_file_location("noxfile_under_test", NOXFILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # A tree of its own: pyproject.toml and .nox/zo2bench under tmp_path; venv creation only makes bin/python.
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    monkeypatch.setattr(mod, "ENV", tmp_path / ".nox" / "zo2bench")
    monkeypatch.setattr(mod, "STAMP", mod.ENV / "zo2bench-install.json")
    monkeypatch.setattr(mod, "BIN", mod.ENV / "bin")
    created = []

    def fake_venv():
        created.append(mod.ENV)
        mod.BIN.mkdir(parents=True, exist_ok=True)
        (mod.BIN / "python").write_text("")

    monkeypatch.setattr(mod, "_create_venv", fake_venv)
    mod.created = created
    return mod


def pip_installs(session):
    return [c[c.index("install") + 2:] for c in session.commands if "pip" in c and "install" in c]


def test_first_session_builds_torch_first_then_reruns_reuse(noxfile):
    s = FakeSession()
    noxfile.memory_scaling(s)
    assert len(noxfile.created) == 1
    assert pip_installs(s) == [["torch==2.13.0"], ["-e", "."]]  # torch pinned, before anything that needs it
    assert s.commands[-1][1:3] == ["sweep", "experiments/memory_scaling.toml"]

    again = FakeSession(["--profile", "cpu"])
    noxfile.memory_scaling(again)
    assert len(noxfile.created) == 1 and pip_installs(again) == []  # a re-run installs nothing
    assert again.commands[-1][-2:] == ["--profile", "cpu"]  # arguments after -- reach the sweep
    assert any("reusing" in line for line in again.logs)


def test_tests_session_adds_its_extra_once_then_lints_and_checks_tables_before_pytest(noxfile):
    noxfile.memory_scaling(FakeSession())
    s = FakeSession(["-k", "cli"])
    noxfile.tests(s)
    assert pip_installs(s) == [["torch==2.13.0"], ["-e", ".[test]"]] and len(noxfile.created) == 1
    tools = [Path(c[0]).name for c in s.commands if "pip" not in c]
    assert tools == ["ruff", "zo2bench", "pytest"] and s.commands[-1][-2:] == ["-k", "cli"]
    assert [c[1:] for c in s.commands if Path(c[0]).name == "zo2bench"] == [["report", "tables", "--check"]]
    s2 = FakeSession()
    noxfile.tests(s2)
    noxfile.memory_scaling(s2)
    assert pip_installs(s2) == []  # the sweep takes the environment with the test extra as it is


def test_a_changed_pyproject_reinstalls_into_the_same_environment(noxfile):
    noxfile.tests(FakeSession())
    (noxfile.ROOT / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies = ['scipy']\n")
    s = FakeSession()
    noxfile.memory_scaling(s)
    assert len(noxfile.created) == 1 and pip_installs(s) == [["torch==2.13.0"], ["-e", "."]]


def test_zo2bench_torch_pins_another_build(noxfile, monkeypatch):
    noxfile.tests(FakeSession())
    monkeypatch.setattr(noxfile, "TORCH", "torch==2.11.0")
    s = FakeSession()
    noxfile.tests(s)
    assert pip_installs(s)[0] == ["torch==2.11.0"]


def test_a_missing_interpreter_rebuilds_the_environment(noxfile):
    noxfile.tests(FakeSession())
    (noxfile.BIN / "python").unlink()
    noxfile.tests(FakeSession())
    assert len(noxfile.created) == 2
