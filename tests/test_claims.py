"""The claims data: complete, unique, in known units, quoted verbatim, and its arithmetic as the documents'."""
import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from zo2bench.analysis import claims, evidence, exact, formulas, units
from zo2bench.errors import UserError

REPO = Path(__file__).resolve().parent.parent
# The seeds live beside the checkout (../shared) or inside it (shared/); the package never reads them.
SEEDS = next((p for p in (REPO.parent / "shared" / "seeds", REPO / "shared" / "seeds") if p.is_dir()), None)
ALL = claims.load()
MODES = {"zo2", "mezo", "fo-adamw"}


def test_there_are_about_a_hundred_claims_or_more_and_ids_are_unique():
    assert len(ALL) >= 100
    ids = [c.id for c in ALL]
    assert len(ids) == len(set(ids))
    assert {c.document for c in ALL} == {"000", "002"}
    assert all(re.fullmatch(r"(000|002)-[a-zA-Z0-9.\-]+", i) for i in ids)


@pytest.mark.parametrize("c", ALL, ids=lambda c: c.id)
def test_every_claim_is_complete(c):
    assert c.section and c.text.strip() and c.hardware
    assert c.unit in units.UNITS, f"unknown unit {c.unit}"
    assert c.quantity in claims.QUANTITIES
    assert c.sense in claims.SENSES
    if isinstance(c.value, tuple):
        assert len(c.value) == 2 and c.value[0] <= c.value[1]
    else:
        assert isinstance(c.value, float)
    for f in ("mode", "baseline_mode"):
        assert getattr(c, f) in MODES | {None}
    if c.view:
        assert c.view in evidence.VIEWS
    if c.model:
        exact.spec(c.model)                                   # a catalog model or a document shape
    if c.params_range:
        assert c.params_range[0] < c.params_range[1]
    for f in c.assumed:                                       # an assumed field is filled in
        assert getattr(c, f) is not None
    if c.quantity in ("reduction", "memory_saving", "memory_ratio", "slowdown_vs_backprop", "efficiency",
                      "model_size_ratio", "energy_savings"):
        assert c.mode and c.baseline_mode
    if c.check:
        assert isinstance(claims.check_document(c).recomputed, float)


def test_claim_fields_are_documented_in_the_dataclass():
    names = {f.name for f in fields(claims.Claim)}
    assert {"id", "document", "section", "text", "value", "unit", "hardware", "quantity", "model", "mode", "batch",
            "seq", "dtype", "view"} <= names


@pytest.mark.skipif(SEEDS is None, reason="the design documents (shared/seeds) are not beside this checkout")
@pytest.mark.parametrize("c", ALL, ids=lambda c: c.id)
def test_claim_text_is_quoted_verbatim(c):
    doc = claims.documents()[c.document]["file"]
    text = (SEEDS / doc).read_text()
    for fragment in c.text.split(" … "):
        assert fragment in text, f"{c.id}: {fragment!r} is not in {doc}"


_NUMBER = re.compile(r"(\d[\d,]*(?:\.\d+)?(?:e-?\d+)?)\s*([KMBT](?![a-zA-Z]))?")
# Claims whose value is not written as a number in their text, and why.
_DERIVED = {
    "002-1.1-block-divisor": "n/(L×4): the 4 is a divisor; the value is 1/4 byte per parameter of n/L",
    "002-1.1-head-fraction": "0.02n",
    "002-4.2-accuracy": "the 85%-100% axis of an ASCII chart, in the claim's note",
}


@pytest.mark.parametrize("c", ALL, ids=lambda c: c.id)
def test_claim_value_is_written_in_its_text(c):
    if c.id in _DERIVED:
        pytest.skip(_DERIVED[c.id])
    if c.quantity == "fits":                                  # "N/A*": "Cannot fit on single GPU ..."
        assert c.value == 0 and "N/A*" in c.text
        return
    found = set()
    for m in _NUMBER.finditer(c.text):
        v = float(m[1].replace(",", ""))
        found |= {v, v * {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(m[2] or "", 1)}
    wanted = c.value if isinstance(c.value, tuple) else (abs(c.value),)
    for w in wanted:
        assert any(f == pytest.approx(w, rel=1e-9) for f in found), f"{c.id}: {w} not in {c.text!r}"


def test_spot_checks_against_the_documents_figures():
    assert claims.get("002-1.2-opt-1.3b-gpu-mem-zo2").value == 2.6
    assert claims.get("002-1.2-opt-1.3b-gpu-mem-zo2").unit == "GB"
    assert claims.get("002-1.2-1t-params").value == 1e12
    assert claims.get("002-2.2-opt-6.7b-tokens-zo2").value == 768
    assert claims.get("002-2.3-1b-10b-efficiency").value == (90.0, 95.0)
    assert claims.get("002-3.1-1b-3b-gpu-min").hardware == "RTX 2070 8GB"
    assert claims.get("002-3.1-70b-175b-cpu-ram").value == 1.0 and claims.get("002-3.1-70b-175b-cpu-ram").unit == "TB"
    assert claims.get("002-5.1-opt-6.7b-zo2-cost").hardware == "A10 24GB"
    assert claims.get("002-4.1-opt-175b-epochs").value == (0.5, 1.0)
    assert claims.get("000-mem-opt-2.7b-cpu").value == 7182.03
    assert claims.get("000-mem-opt-125m-params").value == pytest.approx(0.15e9)
    c = claims.get("002-2.2-opt-13b-tokens-backprop")                  # "N/A*": does not fit with backprop
    assert (c.quantity, c.value, c.mode) == ("fits", 0.0, "fo-adamw")


def test_the_tables_follow_sixteen_and_four_bytes_per_parameter():
    for c in claims.load("002"):
        if c.section == "1.2" and c.column == "GPU Mem (Backprop)":
            n = claims.get(c.id.replace("gpu-mem-backprop", "params")).value
            assert c.value * 1e9 == pytest.approx(formulas.gpu_memory_backprop(n), rel=1e-3)
        if c.section == "1.2" and c.column == "CPU RAM":
            n = claims.get(c.id.replace("cpu-ram", "params")).value
            assert c.value * 1e9 == pytest.approx(formulas.host_memory(n), rel=1e-3)


def test_document_checks_record_what_the_documents_own_arithmetic_says():
    def holds(cid):
        return claims.check_document(claims.get(cid)).holds

    assert holds("002-1.2-opt-1.3b-reduction")                 # 20.8 / 2.6 = 8.0
    assert holds("002-1.4-total")                              # the seven terms add to 18 GB
    assert holds("002-6.3-max")                                # (80 - 5) x 2 x 128 / 2 = 9600
    assert holds("002-A.2-tokens")                             # 2048 / 2.25 = 910
    assert holds("002-6.1-time-months")                        # 2000 h = 2.8 months, "3" at its rounding
    assert holds("000-cmp-opt-125m-saving")                    # 2546.94 - 2464.00 = 82.94
    assert not holds("002-4.1-opt-125m-simple")                # formula 4.1: 1.1e14, not 10,000
    assert not holds("002-1.2-opt-125m-gpu-mem-zo2")           # formula 1.1: 2.5 GB, not 0.5 GB
    assert not holds("002-1.4-active-block")                   # n/(4L) = 0.46 GB, not 1.8 GB
    assert not holds("002-3.3-research-budget")                # the parts add to $1,900
    assert not holds("002-A.1-margin")                         # 11.15 GB computed, 18 GB stated
    assert holds("002-3.3-enterprise-budget")                  # $95,000 >= "$50,000+"


def test_evaluate_refuses_anything_but_arithmetic():
    assert claims.evaluate("2 * (3 + 4)") == 14
    assert claims.evaluate("max_model_size() / 1e12") == pytest.approx(9.6)
    with pytest.raises(UserError):
        claims.evaluate("__import__('os').getcwd()")
    with pytest.raises(UserError):
        claims.evaluate("{no-such-claim} + 1")


def test_parse_cell():
    assert claims.parse_cell("2.6 GB")["value"] == 2.6 and claims.parse_cell("2.6 GB")["unit"] == "GB"
    assert claims.parse_cell("125M")["value"] == 125e6
    assert claims.parse_cell("15,360")["value"] == 15360
    assert claims.parse_cell("95-99%")["value"] == (95, 99) and claims.parse_cell("95-99%")["unit"] == "%"
    assert claims.parse_cell("$1,920 (A100 80GB)") == {"value": 1920, "unit": None, "paren": "A100 80GB",
                                                       "approx": False}
    assert claims.parse_cell("~8.87 it/s")["approx"]
    assert claims.parse_cell("1.5 TB")["unit"] == "TB"
    assert claims.parse_cell("N/A*") is None and claims.parse_cell("TBD") is None


def _table(rows, **kw):
    return {"id": "t", "section": "9.9", "header": "| Model | Mem |", "rows": rows,
            "columns": [{"name": "Mem", "quantity": "gpu_memory", "unit": "GB"}], **kw}


def test_a_table_cell_that_is_no_claim_must_be_listed():
    head = {"document": "002", "hardware": "unstated"}
    with pytest.raises(UserError, match="neither a number"):
        claims._table_claims(head, _table(["| A | TBD |"]))
    assert claims._table_claims(head, _table(["| A | TBD |"], skip={"A|Mem": "TBD"})) == []
    with pytest.raises(UserError, match="has unit MB"):
        claims._table_claims(head, _table(["| A | 3 MB |"]))
    with pytest.raises(UserError, match="do not match"):
        claims._table_claims(head, _table(["| A | 3 GB |"], header="| Model | Mem | Other |"))
    (c,) = claims._table_claims(head, _table(["| A | 3 GB |"]))
    assert (c.id, c.value, c.column, c.text) == ("t-a-mem", 3.0, "Mem", "| A | 3 GB |")


def test_claims_ship_inside_the_package():
    assert claims.DATA_DIR.parent == Path(claims.__file__).parent
    assert {p.name for p in claims.DATA_DIR.glob("*.toml")} == {"000.toml", "002.toml"}
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "claims/*.toml" in cfg["tool"]["setuptools"]["package-data"]["zo2bench.analysis"]
