"""Benchmarks name the code they timed the way every record does (probes.fingerprint.git_info): the
commit given by ZO2BENCH_GIT_COMMIT/ZO2BENCH_GIT_DIRTY wins over whatever .git pytest-benchmark finds (the
GPU machine's copy of the tree once carried a stale one, and a stored microbenchmark named it)."""
from zo2bench.probes.fingerprint import git_info


def pytest_benchmark_update_commit_info(config, commit_info):
    git = git_info()
    if git["git_source"] == "environment":
        commit_info.update(id=git["git_commit"], dirty=git["git_dirty"], source="environment")
