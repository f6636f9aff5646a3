"""A/B of two commits on one runner: a git worktree of each, the regression series run for each in
interleaved rounds (base, head, base, head, ...) in one job, then the gates of `zo2bench compare`.

    run = run_ab(".", base="origin/main", head="HEAD", out_dir=".regression/ab")
    report = compare(load_side(run["base_dir"]), load_side(run["head_dir"]))

Each side runs its own commit's code (the sweep is launched from its worktree, with its worktree first
on PYTHONPATH and ZO2BENCH_GIT_COMMIT naming the commit), on the experiment file as the head has it, so
both sides run the same cells. A round runs the whole series once per side with one repeat per cell;
there are as many rounds as the profile's steps.repeats, so an A/B pools as many runs per cell as a plain
run. Interleaving spreads the drift of a machine through the day over both sides alike. The worktrees
live in a temporary folder and are removed at the end, also after an error or Ctrl-C.

`command` is the argument list run per side and round, with {python}, {file}, {profile}, {results_dir},
{side}, {round} and {commit} filled in; the default is `zo2bench sweep` itself (tests inject a stub).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from zo2bench import results
from zo2bench.errors import UserError

DEFAULT_COMMAND = ("{python}", "-m", "zo2bench", "sweep", "{file}", "--profile", "{profile}",
                   "--results-dir", "{results_dir}", "--force")


def git(repo, *args, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise UserError(f"git {' '.join(args)}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return proc.stdout.strip()


def repo_root(path=".") -> Path:
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"{Path(path).resolve()}: not inside a git repository; an A/B checks out commits with git")
    return Path(proc.stdout.strip())


def resolve(repo, ref: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"'{ref}' is not a commit of {repo} (a shallow clone may lack it: fetch it, or "
                        f"check out with fetch-depth: 0)")
    return proc.stdout.strip()


@contextlib.contextmanager
def checkout(repo, commit: str, where: Path, keep: bool = False, stream=None):
    """A detached worktree of `commit` at `where` for the block's length, removed after it (also on error)
    unless `keep`."""
    git(repo, "worktree", "add", "--detach", str(where), commit)
    try:
        yield where
    finally:
        if keep:
            print(f"zo2bench ab: kept the worktree of {commit[:12]} at {where}", file=stream or sys.stderr)
        else:
            git(repo, "worktree", "remove", "--force", str(where), check=False)
            git(repo, "worktree", "prune", check=False)


def commit_env(tree: Path, commit: str) -> dict:
    """The environment that runs `commit`'s code from its worktree and names it in the records."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    env.update(ZO2BENCH_GIT_COMMIT=commit, ZO2BENCH_GIT_DIRTY="0")
    return env


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def _toml(d: dict, prefix: str = "") -> list[str]:
    key = lambda k: k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)
    lines = [f"{key(k)} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            name = prefix + key(k)
            lines += ["", f"[{name}]", *_toml(v, name + ".")]
    return lines


def one_repeat_file(experiment: Path, dest: Path) -> tuple[Path, dict]:
    """The experiment with steps.repeats = 1 everywhere (a round is one repeat), and its parsed table."""
    try:
        raw = tomllib.loads(experiment.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"{experiment}: cannot read the experiment: {e}") from None
    raw.setdefault("name", experiment.stem)
    for layer in [raw, *[p for p in raw.get("profiles", {}).values() if isinstance(p, dict)]]:
        if "repeats" in layer.get("steps", {}) or layer is raw:
            layer.setdefault("steps", {})["repeats"] = 1
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{raw['name']}.toml"
    path.write_text(f"# {experiment} with one repeat per cell: one round of an A/B (zo2bench ab)\n"
                    + "\n".join(_toml(raw)) + "\n")
    return path, raw


def _choose_profile(experiment: Path, profile: str | None) -> tuple[str, int]:
    from zo2bench.experiments.spec import load

    exp = load(experiment)
    if profile is None:
        import torch

        profile = exp.choose_profile(None, torch.cuda.is_available(), gpus=torch.cuda.device_count())
    else:
        exp.choose_profile(profile, False)  # refuses an unknown profile, naming those there are
    return profile, int(exp.profiles[profile]["steps"]["repeats"])


def run_ab(repo, base: str, head: str = "HEAD", experiment: str = "experiments/regression.toml",
           profile: str | None = None, rounds: int | None = None, out_dir=None,
           command=DEFAULT_COMMAND, keep_worktrees: bool = False, stream=None) -> dict:
    """Run the rounds; returns {"base_dir", "head_dir", "plan"} (rows under out_dir/base and out_dir/head)."""
    stream = stream or sys.stderr
    if rounds is not None and rounds < 1:
        raise UserError(f"--rounds must be >= 1, got {rounds}")
    repo = repo_root(repo)
    sides = {"base": (base, resolve(repo, base)), "head": (head, resolve(repo, head))}
    if head == "HEAD" and git(repo, "status", "--porcelain", "--untracked-files=no"):
        print("zo2bench ab: note: uncommitted changes are not part of the A/B (it runs commits)", file=stream)
    out_dir = Path(out_dir or repo / ".regression" / time.strftime("ab-%Y%m%dT%H%M%SZ", time.gmtime())).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="zo2bench-ab-"))
    try:
        with contextlib.ExitStack() as trees_open:
            trees = {side: trees_open.enter_context(checkout(repo, commit, tmp / side, keep_worktrees, stream))
                     for side, (_, commit) in sides.items()}
            return _rounds(sides, trees, experiment, profile, rounds, out_dir, command, repo, tmp, stream)
    finally:
        if not keep_worktrees:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def _rounds(sides, trees, experiment, profile, rounds, out_dir, command, repo, tmp, stream) -> dict:
    base, head = sides["base"][0], sides["head"][0]
    source = trees["head"] / experiment
    if not source.is_file():
        raise UserError(f"{experiment}: not in the head commit {sides['head'][1][:12]}; the A/B runs the "
                        f"series as the head declares it")
    profile, repeats = _choose_profile(source, profile)
    rounds = rounds or repeats
    round_file, _ = one_repeat_file(source, tmp / "experiment")
    plan = {"kind": "zo2bench_ab", "repo": str(repo), "experiment": experiment, "profile": profile,
            "rounds": rounds, "started_utc": _utc(), "order": [],
            **{side: {"ref": ref, "commit": commit} for side, (ref, commit) in sides.items()}}
    print(f"zo2bench ab: base {base} ({sides['base'][1][:12]}) vs head {head} ({sides['head'][1][:12]}), "
          f"{experiment} profile '{profile}', {rounds} rounds interleaved -> {out_dir}", file=stream)
    for k in range(1, rounds + 1):
        for side, (_, commit) in sides.items():
            print(f"zo2bench ab: round {k}/{rounds}: {side} {commit[:12]}", file=stream, flush=True)
            _run_side(command, trees[side], side, k, commit, round_file, profile, out_dir / side / f"round-{k}",
                      stream)
            plan["order"].append(f"{side}:{k}")
    plan["finished_utc"] = _utc()
    results.write_json_atomic(out_dir / "ab.json", plan)
    return {"base_dir": out_dir / "base", "head_dir": out_dir / "head", "plan": plan}


def _run_side(command, tree: Path, side: str, k: int, commit: str, round_file: Path, profile: str,
              results_dir: Path, stream) -> None:
    fill = {"python": sys.executable, "file": str(round_file), "profile": profile, "results_dir": str(results_dir),
            "side": side, "round": str(k), "commit": commit}
    argv = [part.format(**fill) for part in command]
    env = commit_env(tree, commit)
    stream.flush()
    # the series' stdout joins our stderr, so that `zo2bench ab --format json > file` stays clean
    rc = subprocess.run(argv, cwd=tree, env=env, stdout=sys.stderr.fileno() if _has_fd(sys.stderr) else None).returncode
    if rc == 1:
        print(f"zo2bench ab: {side} round {k}: a cell ended in error (its row says why); going on", file=stream)
    elif rc != 0:
        raise UserError(f"{side} commit {commit[:12]}, round {k}: `{' '.join(argv)}` exited with status {rc}")


def _has_fd(f) -> bool:
    try:
        f.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
