"""Document 002's formulas against hand-worked values; the exact counts beside them; the GB readings."""
import math

import pytest

from zo2bench import catalog
from zo2bench.analysis import exact, formulas, units
from zo2bench.errors import UserError


def test_gpu_memory_as_written_for_opt_175b():
    t = formulas.gpu_memory_terms(175e9, 96)
    # by hand: 0.02 x 175e9 = 3.5e9 each; 2 x 175e9 / (96 x 4) = 911,458,333; 2 GB + 0.5 GB
    assert t.embeddings == pytest.approx(3.5e9)
    assert t.head == pytest.approx(3.5e9)
    assert t.blocks == pytest.approx(911_458_333.3, rel=1e-9)
    assert (t.workspace, t.overhead) == (2e9, 0.5e9)
    assert formulas.gpu_memory(175e9, 96) == pytest.approx(10_411_458_333.3, rel=1e-9)


def test_gpu_memory_binary_reading_changes_only_the_gb_constants():
    dec = formulas.gpu_memory_terms(1.3e9, 24)
    binary = formulas.gpu_memory_terms(1.3e9, 24, reading="binary")
    assert binary.workspace == 2 * 2**30 and binary.overhead == 0.5 * 2**30
    assert binary.embeddings == dec.embeddings and binary.blocks == dec.blocks


def test_gpu_memory_block_divisor_one_gives_the_breakdowns_block():
    # 1.4 shows "Active Block (1.8 GB)": n/L bytes, the formula with the /4 dropped
    t = formulas.gpu_memory_terms(175e9, 96, active_blocks=1, block_divisor=1)
    assert t.blocks / 1e9 == pytest.approx(1.82, abs=0.01)


def test_backprop_and_host_bytes_per_parameter():
    assert formulas.gpu_memory_backprop(1.3e9) == pytest.approx(20.8e9)
    assert formulas.host_memory(175e9) == pytest.approx(700e9)
    assert formulas.host_memory(175e9, 2) == pytest.approx(350e9)


def test_step_time_reproduces_appendix_a2():
    st = formulas.step_time(2e-3, 35e-3, 3e-3, 32)            # transfers hidden, no sync
    assert st.forward == pytest.approx(2.25)                 # 2 x (2 + 32 x 35 + 3) ms
    assert st.transfer == 0 and st.total == pytest.approx(2.25)
    assert formulas.tokens_per_s(st, 1, 2048) == pytest.approx(910.2, abs=0.05)
    assert st.it_per_s == pytest.approx(1 / 2.25)


def test_step_time_exposed_transfer_and_sync():
    # 32 blocks x 11 ms each way against 1 s of compute: serial 0.704 - 1.0 -> hidden; against 0.5 s -> 0.204 s
    st = formulas.step_time(0, 0, 0, 32, t_upload=0.352, t_offload=0.352, t_compute=0.5, sync_overhead=0.01)
    assert st.transfer == pytest.approx(0.204)
    assert st.sync == pytest.approx(0.02)
    assert st.total == pytest.approx(0.224)


def test_transfer_time_serial_against_duplex():
    assert formulas.transfer_time(0.3, 0.3, 0.5) == pytest.approx(0.1)        # the document: directions summed
    assert formulas.transfer_time(0.3, 0.3, 0.5, overlap="duplex") == 0.0     # full duplex: the slower one
    assert formulas.transfer_time(0.7, 0.3, 0.5, overlap="duplex") == pytest.approx(0.2)
    with pytest.raises(ValueError):
        formulas.transfer_time(1, 1, 1, overlap="both")


def test_efficiency_and_pcie_bandwidth():
    assert formulas.efficiency(0.9, 0.1) == pytest.approx(0.9)
    assert formulas.efficiency(1.0, 0.0) == 1.0
    assert formulas.required_pcie_bandwidth(1e9, 0.1) == pytest.approx(2e10)   # 2 x 1 GB / 0.1 s = 20 GB/s


def test_iterations_as_written_and_the_tables_constant():
    # 1000 x sqrt(125e6) / 1e-7 = 1000 x 11180.34 x 1e7
    assert formulas.iterations(125e6) == pytest.approx(1.118034e14, rel=1e-6)
    assert formulas.iterations(125e6, task_complexity=2.0) == pytest.approx(2.236068e14, rel=1e-6)
    # the 4.1 table's 10,000 for OPT-125M needs k/lr = 10000 / 11180.34
    assert formulas.implied_iterations_constant(10_000, 125e6) == pytest.approx(0.8944, abs=1e-4)


def test_energy_per_token_and_the_net_savings_arithmetic():
    assert formulas.energy_per_token(300, 1e-3, 100, 2e-4) == pytest.approx(0.32)
    # savings = 0.5 g - 0.2 (1 - g): 30% at g = 5/7, 40% at g = 6/7
    assert formulas.net_energy_savings(5 / 7) == pytest.approx(0.30)
    assert formulas.net_energy_savings(6 / 7) == pytest.approx(0.40)
    assert formulas.net_energy_savings(0.5) == pytest.approx(0.15)


def test_max_model_size_the_documents_arithmetic_and_the_counted_bound():
    assert formulas.max_model_size() == pytest.approx(9.6e12)               # (80 - 5) x 2 x 128 / 2 "T"
    assert exact.max_params(80e9, 5e9, layers=128) == pytest.approx(2.4e12)  # 75 GB / (2 blocks x 2 B) x 128
    assert exact.max_params(4e9, 5e9, layers=128) == 0.0


# -- exact counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, nominal", [("gpt3-175b", 175e9), ("bloom-176b", 176e9), ("mt-nlg-530b", 530e9),
                                           ("1t", 1e12)])
def test_document_shapes_count_to_their_names(name, nominal):
    assert exact.spec(name).n_params() == pytest.approx(nominal, rel=0.01)


def test_memory_comparison_counts_the_terms_exactly():
    s = catalog.get("opt-1.3b")
    terms = {t.term: t for t in exact.memory_comparison("opt-1.3b", dtype="fp16")}
    assert terms["embeddings"].exact_bytes == s.embed_params() * 2 == 107_155_456 * 2
    assert terms["head"].exact_bytes == 4096 * 2                       # tied: the final norm only
    assert terms["blocks"].exact_bytes == 2 * 50_358_272 * 2
    assert terms["embeddings"].approx_bytes == pytest.approx(0.02 * s.n_params())
    assert terms["workspace"].exact_bytes == terms["workspace"].approx_bytes == 2e9
    parts = [t for t in terms.values() if t.term != "total"]
    assert terms["total"].exact_bytes == pytest.approx(sum(t.exact_bytes for t in parts))
    assert terms["total"].approx_bytes == pytest.approx(formulas.gpu_memory(s.n_params(), s.layers))


def test_untied_head_counts_its_own_matrix():
    head = {t.term: t for t in exact.memory_comparison("opt-1.3b-untied", dtype="fp32")}["head"]
    assert head.exact_bytes == (2 * 2048 + 50272 * 2048) * 4


def test_split_disagreement_adds_up():
    d = exact.split_disagreement(3.0e9, "opt-1.3b")
    assert d["approx"] + d["approximation"] + d["model"] == pytest.approx(d["measured"])
    assert d["exact"] + d["model"] == pytest.approx(3.0e9)


def test_exact_pcie_bandwidth_uses_the_blocks_bytes():
    assert exact.block_bytes("opt-6.7b") == 201_379_840 * 2
    assert exact.required_pcie_bandwidth("opt-6.7b", 0.1) == pytest.approx(2 * 201_379_840 * 2 / 0.1)


# -- units ----------------------------------------------------------------------------------------------
def test_readings_of_gb():
    assert units.to_base(2.6, "GB") == pytest.approx(2.6e9)
    assert units.to_base(2.6, "GB", "binary") == pytest.approx(2.6 * 2**30)
    assert units.to_base(1, "MB", "binary") == 2**20
    assert units.to_base(64, "GB/s", "binary") == 64 * 2**30
    assert units.to_base(1, "GiB", "decimal") == units.to_base(1, "GiB", "binary") == 2**30
    assert units.to_base((30, 40), "%") == pytest.approx((0.3, 0.4))
    assert units.from_base(2.6e9, "GB") == pytest.approx(2.6)
    assert units.to_base(0.45, "GB/B params") == pytest.approx(0.45)              # bytes per parameter
    assert units.to_base(0.45, "GB/B params", "binary") == pytest.approx(0.45 * 2**30 / 1e9)
    assert units.reading_matters("GB") and units.reading_matters("MB/B params")
    assert not units.reading_matters("GiB") and not units.reading_matters("tokens/s")
    assert units.base_unit("hours") == "s" and units.to_base(2, "hours") == 7200


def test_unit_labels_and_unknowns():
    assert "10^9" in units.label("GB") and "GiB" in units.label("GB", "binary")
    assert units.label("tokens/s") == "tokens/s"
    with pytest.raises(UserError):
        units.unit("furlongs")
    with pytest.raises(UserError):
        units.to_base(1, "GB", "octal")
    assert math.isclose(units.factor("TB", "binary"), 2**40)
