"""`results export` and `results list`: readable columns with units, --columns, --all without JSON text in
cells, and rows of dirty or unknown commits marked."""
import json

import pandas as pd
import pytest

from zo2bench import results
from zo2bench.cli import main
from zo2bench.errors import UserError
from zo2bench.export import COLUMNS, export_table, flatten, git_mark

MIB = 2**20


def row(key="toy:cpu:opt-tiny:zo2:fp32:b1:s16:r0", commit="a" * 40, dirty=False, **extra):
    """A row shaped like the sweep's (results.py), with round numbers so that conversions can be checked."""
    views = {"phase": "measured", "torch_peak_allocated_bytes": 5 * MIB, "torch_peak_reserved_bytes": 6 * MIB,
             "nvml_process_peak_bytes": None, "nvml_device_peak_bytes": None, "host_rss_peak_bytes": 1024 * MIB,
             "pinned_peak_bytes": 0}
    return {"schema_version": 1, "kind": "sweep_cell", "series": "toy", "profile": "cpu", "key": key,
            "cell": {"model": "opt-tiny", "mode": "zo2", "dtype": "fp32", "batch": 1, "seq": 16, "repeat": 0},
            "n_params": 298_496, "machine_id": "box", "status": "ok", "reason": None,
            "step_time_s": {"n": 4, "median": 0.0125, "iqr": 0.0005}, "tokens_per_s": 1280.0, "build_seconds": 0.25,
            "losses": [6.9, 6.8, 6.7], "steps": [{"step": 0, "seconds": 0.01}, {"step": 1, "seconds": 0.02}],
            "probes": {"not_measured": ["gpu_util_percent", "power_w"], "read_errors": {}, "series": {"t_s": []}},
            "memory": {"views": {"measured": views}}, "wall_s": 1.5, "finished_utc": "2026-11-26T10:00:00Z",
            "fingerprint": {"git_commit": commit, "git_dirty": dirty, "torch": "2.13.0", "gpu": None}, **extra}


def test_default_columns_are_readable_with_units():
    df = export_table([row()])
    assert list(df.columns) == list(COLUMNS)
    r = df.iloc[0]
    assert (r["model"], r["mode"], r["batch"], r["seq"]) == ("opt-tiny", "zo2", 1, 16)
    assert r["step_time_median_ms"] == 12.5 and r["step_time_iqr_ms"] == 0.5 and r["tokens_per_s"] == 1280.0
    assert r["torch_peak_allocated_mib"] == 5.0 and r["host_rss_peak_mib"] == 1024.0 and r["build_s"] == 0.25
    assert pd.isna(r["nvml_process_peak_mib"])  # not measured stays empty, never 0
    assert all(c.endswith(("_ms", "_mib", "_s")) for c in COLUMNS if any(u in c for u in ("time", "peak", "build")))


def test_counts_stay_integers_beside_rows_without_them():
    infeasible = {k: v for k, v in row(key="k2").items() if k not in ("step_time_s", "memory")}
    df = export_table([row(), {**infeasible, "status": "infeasible"}])
    assert str(df["steps_measured"].dtype) == "Int64" and df.to_csv(index=False).count(",4,") == 1


@pytest.mark.parametrize("commit,dirty,state,mark", [("a" * 40, False, "clean", "aaaaaaa"),
                                                     ("b" * 40, True, "dirty", "bbbbbbb*"),
                                                     (None, None, "unknown", "?"),
                                                     ("c" * 40, None, "unknown", "ccccccc?")])
def test_git_state_and_mark(commit, dirty, state, mark):
    r = row(commit=commit, dirty=dirty)
    assert export_table([r]).iloc[0]["git_state"] == state and git_mark(r) == mark


def test_flatten_leaves_no_json_text():
    flat = flatten(row())
    assert flat["probes.not_measured"] == "gpu_util_percent, power_w"
    assert (flat["losses.n"], flat["losses.first"], flat["losses.last"]) == (3, 6.9, 6.7)
    assert flat["steps.n"] == 2 and flat["probes.series.t_s.n"] == 0
    assert not any(k.startswith("probes.read_errors") for k in flat)  # an empty dict has no fields
    assert not any(isinstance(v, (list, dict)) or (isinstance(v, str) and v[:1] in "[{") for v in flat.values())


def test_columns_choose_and_order_named_or_dotted():
    df = export_table([row()], columns=["tokens_per_s", "model", "memory.views.measured.host_rss_peak_bytes"])
    assert list(df.columns) == ["tokens_per_s", "model", "memory.views.measured.host_rss_peak_bytes"]
    assert df.iloc[0]["memory.views.measured.host_rss_peak_bytes"] == 1024 * MIB


def test_unknown_column_is_one_line_listing_the_names():
    with pytest.raises(UserError) as e:
        export_table([row()], columns=["model", "speed"])
    assert "speed" in str(e.value) and "step_time_median_ms" in str(e.value) and "\n" not in str(e.value)


def test_all_columns_start_with_the_readable_ones():
    df = export_table([row()], all_columns=True)
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert {"cell.model", "step_time_s.median", "losses.last", "fingerprint.torch"} <= set(df.columns)


@pytest.fixture
def store(tmp_path):
    f = tmp_path / "toy" / "box" / "20261126T100000Z.jsonl"
    results.append_row(f, row())
    results.append_row(f, row(key="k-dirty", commit="b" * 40, dirty=True))
    results.append_row(tmp_path / "toy" / "box" / "20261126T110000Z.jsonl", row(key="k-old", commit=None, dirty=None))
    return tmp_path


def test_export_cli_default_columns_and_flags(store, capsys):
    assert main(["results", "export", "--results-dir", str(store)]) == 0
    out = capsys.readouterr().out
    header, *lines = out.splitlines()
    assert header.split(",") == list(COLUMNS) and len(lines) == 3
    assert sorted(line.rsplit(",", 1)[1] for line in lines) == ["clean", "dirty", "unknown"]
    assert main(["results", "export", "--results-dir", str(store), "--columns", "key,git_state"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "key,git_state"
    assert main(["results", "export", "--results-dir", str(store), "--columns", "key,nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown column nope" in err


def test_export_all_has_no_json_in_cells(store, tmp_path):
    out = tmp_path / "all.csv"
    assert main(["results", "export", "--results-dir", str(store), "--all", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df.columns) > len(COLUMNS)
    assert not any(str(c).startswith(("[", "{")) for c in df.to_numpy().ravel())


def test_export_as_a_text_table(store, capsys):
    assert main(["results", "export", "--results-dir", str(store), "--format", "table", "--columns",
                 "model,step_time_median_ms,git_state"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "step_time_median_ms", "git_state"] and "12.5" in lines[1]


def test_list_marks_dirty_and_unknown_commits(store, capsys):
    assert main(["results", "list", "--results-dir", str(store)]) == 0
    out = capsys.readouterr().out
    first, second = [line for line in out.splitlines() if line.startswith("toy")]
    assert "aaaaaaa bbbbbbb*" in first and " ? " in second and "2 " in first
    assert "* = measured with uncommitted changes" in out and "? = commit unknown" in out


def test_list_warns_once_about_a_torn_line(tmp_path, capsys):
    f = tmp_path / "toy" / "box" / "x.jsonl"
    results.append_row(f, row())
    with open(f, "a") as fh:
        fh.write(json.dumps(row())[:40])  # a row cut short by a crash
    assert main(["results", "list", "--results-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().err.count("incomplete row") == 1
