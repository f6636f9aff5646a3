"""Benchmarks name the code they timed the way every record does (probes.fingerprint.git_info): the
commit given by ZO2BENCH_GIT_COMMIT/ZO2BENCH_GIT_DIRTY wins over whatever .git pytest-benchmark finds (the
GPU machine's copy of the tree once carried a stale one, and a stored microbenchmark named it). Their machine
and code are described where every record has them: the project's fingerprint (GPU, driver, link, library
versions, commit, dirty) at the top of the JSON file, beside pytest-benchmark's own machine_info."""
from zo2bench.probes.fingerprint import fingerprint, git_info


def pytest_benchmark_update_commit_info(config, commit_info):
    git = git_info()
    if git["git_source"] == "environment":
        commit_info.update(id=git["git_commit"], dirty=git["git_dirty"], source="environment")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["fingerprint"] = fingerprint()
