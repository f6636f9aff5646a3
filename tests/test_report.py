"""The reports: every template renders, the same results give the same bytes, damaged input is named and left
out, no results exit 2, and `report tables --check` catches a stale table."""
import contextlib
import io
import json
import random
import re
import shutil
import subprocess
import sys

import pytest
from synthetic_results import MACHINE, write
from synthetic_results import row as synthetic_row

from zo2bench.analysis import load
from zo2bench.cli import main
from zo2bench.report import render as rnd
from zo2bench.report import table as tbl


def damage(root):
    """A torn line and a row of an unknown schema in a sweep file of their own, and a damaged calibration."""
    bad = root / "memory_scaling" / MACHINE / "20260102T000000Z.jsonl"
    bad.write_text('{"schema_version": 1, "kind": "sweep_cell", "key": "torn\n{"schema_version": 99, '
                   '"kind": "sweep_cell", "key": "x"}\n')
    (root / "calibration" / MACHINE / "calibration-20260102T000000Z.json").write_text("{not json")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    write(root / "results")
    damage(root / "results")
    return root


@pytest.fixture(scope="module")
def rendered(results):
    """`zo2bench report` run once: the output folder, the bytes of every file it wrote, and its stderr."""
    out, err = results / "reports", io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["report", "--results", str(results / "results"), "--out", str(out)]) == 0
    files = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    return out, files, err.getvalue()


def test_report_writes_index_and_a_page_per_series_in_html_and_markdown(rendered):
    out, files, _ = rendered
    names = {p.relative_to(out).as_posix() for p in files}
    for page in ("index", "memory_scaling", "throughput_scaling"):
        assert {f"{page}.html", f"{page}.md"} <= names
    assert any(n.startswith("figures/") and n.endswith(".svg") for n in names)
    html = (out / "memory_scaling.html").read_text()
    assert '<img src="data:image/svg+xml;base64,' in html and "<svg" not in html.split("<body>")[0]
    assert "src=\"figures/" not in html                      # self-contained: no file the page depends on
    md = (out / "memory_scaling.md").read_text()
    assert "](figures/memory_scaling-" in md                  # the Markdown shows the SVG files
    assert "](../results/memory_scaling/testgpu-80gb/20260101T000000Z.jsonl#L1)" in md   # numbers link to rows
    thr = (out / "throughput_scaling.md").read_text()
    assert "†" in thr and "dirty checkout" in thr            # the dirty rows (opt-125m) are marked
    assert "projection" in md and "Leave one size out" in md
    for page in ("memory_scaling", "throughput_scaling"):
        assert "Stated by the documents" in (out / f"{page}.md").read_text()


def test_same_results_give_byte_identical_output(results, rendered):
    out, first, _ = rendered
    again = rnd.render(results / "results", out, progress=lambda m: None)
    assert sorted(again) == sorted(first)
    assert all(p.read_bytes() == first[p] for p in again)
    svg = next(b for p, b in first.items() if p.suffix == ".svg").decode()
    assert "<dc:date>" not in svg


def test_every_block_of_every_template_renders(tmp_path):
    env = rnd._env()
    t = tbl.Table("T", ("a", "b"), (tbl.row("x", tbl.Cell("1.0", kind="projection")),), ("a note",), (False, True))
    blocks = [rnd.Block("heading", "H", level=2), rnd.Block("text", "some <text> & more"),
              rnd.Block("list", "items", items=("one", "two")), rnd.Block("table", table=t),
              rnd.Block("figure", "cap", svg="<svg xmlns='http://www.w3.org/2000/svg'/>", file="figures/f.svg"),
              rnd.Block("details", "more", blocks=[rnd.Block("table", table=t)])]
    env.filters["md_table"] = lambda x: tbl.markdown(x, lambda s: None)
    env.filters["html_table"] = lambda x: __import__("markupsafe").Markup(tbl.html(x, lambda s: None))
    ctx = {"title": "t", "blocks": blocks, "nav": [("index", "index")], "page": "index", "warnings": [],
           "results_root": "results"}
    html = env.get_template("page.html.j2").render(**ctx)
    md = env.get_template("page.md.j2").render(**ctx)
    assert "some &lt;text&gt; &amp; more" in html and "<details>" in html and 'class="num projection"' in html
    assert "| x | *1.0* |" in md and "![cap](figures/f.svg)" in md and "- two" in md and "a note" in md
    with pytest.raises(Exception, match="undefined"):       # StrictUndefined: a missing field fails loudly
        env.get_template("page.html.j2").render(**{k: v for k, v in ctx.items() if k != "nav"})


def test_damaged_file_and_unknown_schema_are_named_and_left_out(results, rendered):
    assert len(load.load(results / "results").warnings) == 3
    out, _, err = rendered
    assert "20260102T000000Z.jsonl: line 1 not valid JSON" in err and "schema_version 99" in err
    assert "calibration-20260102T000000Z.json: damaged record" in err
    index = (out / "index.md").read_text()
    assert "Left out" in index and "20260102T000000Z.jsonl" in index
    # the damaged calibration was left out: the report still uses the readable one
    # pages: index, two series and convergence_scaling (made with or without its rows), in HTML and Markdown
    assert "calibration-20260101T000000Z.json" in index and "wrote 8 pages" in err


def test_no_results_is_one_clear_message_and_exit_2(tmp_path):
    (tmp_path / "results").mkdir()
    p = subprocess.run([sys.executable, "-m", "zo2bench", "report", "--results", str(tmp_path / "results"),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("zo2bench: error: no results under") and len(p.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_report_tables_rewrites_and_check_detects_a_stale_table(results, tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    shutil.copytree(results / "results", repo / "results")
    readme = repo / "README.md"
    readme.write_text("# x\n\n<!-- zo2bench:table memory -->\n| old | table |\n<!-- /zo2bench:table -->\n\nafter\n")
    (repo / "docs" / "d.md").write_text("<!-- zo2bench:table crossover:testgpu -->\n<!-- /zo2bench:table -->\n")
    args = ["report", "tables", "--root", str(repo), "--results", str(repo / "results")]
    assert main(args + ["--check"]) == 1
    err = capsys.readouterr().err
    assert "stale tables" in err and "README.md: memory" in err and "d.md: crossover:testgpu" in err
    assert "| old | table |" in readme.read_text()                     # --check changes nothing
    assert main(args) == 0
    text = readme.read_text()
    assert "| old | table |" not in text and text.endswith("<!-- /zo2bench:table -->\n\nafter\n")
    assert "](results/memory_scaling/testgpu-80gb/" in text              # links relative to README
    assert main(args + ["--check"]) == 0
    # a new row makes the table stale again
    extra = repo / "results" / "memory_scaling" / MACHINE / "20260103T000000Z.jsonl"
    extra.write_text(json.dumps(synthetic_row("memory_scaling", "opt-13b", "zo2", 1, 2048, random.Random(1))) + "\n")
    assert main(args + ["--check"]) == 1


def test_report_tables_bad_marker_name_exits_2(results, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("<!-- zo2bench:table nosuch -->\n<!-- /zo2bench:table -->\n")
    p = subprocess.run([sys.executable, "-m", "zo2bench", "report", "tables", "--root", str(repo), "--results",
                        str(results / "results")], capture_output=True, text=True)
    assert p.returncode == 2 and "unknown table 'nosuch'" in p.stderr and "Traceback" not in p.stderr


def test_figure_files_have_plain_names_and_a_render_leaves_no_stale_figure(results, tmp_path):
    """Labels such as "gpu (data v5-42915d5c)" made file names with spaces and parentheses, and a figure that no
    page showed any more stayed in reports/figures beside the current ones."""
    from zo2bench.report import render as rnd

    figs = rnd.Figures("convergence_scaling")
    b = figs("h100-gpu (data v5-42915d5c)-law", "cap", lambda: __import__("matplotlib.pyplot").pyplot.figure())
    assert b.file == "figures/convergence_scaling-h100-gpu-data-v5-42915d5c-law.svg"
    out = tmp_path / "reports"
    (out / "figures").mkdir(parents=True)
    stale = out / "figures" / "memory_scaling-gone-gpu-memory.svg"
    stale.write_text("<svg/>")
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["report", "--results", str(results / "results"), "--out", str(out)]) == 0
    names = [p.name for p in (out / "figures").glob("*.svg")]
    assert names and not stale.exists()
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)
