"""Document 002's formulas with exact parameter counts beside its approximations.

Formula 1.1 approximates the embeddings and the head as 0.02n each and a block as n/(4L); the catalog
counts them layer by layer (a tied head shares the embedding matrix and costs nothing of its own). Put
side by side, a disagreement between the document and a measurement splits in two: the part that comes
from the approximation (exact − approximate) and the part the formula's model itself misses
(measured − exact: activations, workspace, CUDA context, allocator cache...).

    from zo2bench.analysis import exact
    for t in exact.memory_comparison("opt-175b", dtype="fp16"):
        print(t.term, t.approx_bytes / 1e9, t.exact_bytes / 1e9, t.approx_basis, t.exact_basis)
    exact.split_disagreement(measured_bytes=3.1e9, model="opt-1.3b")  # {"approximation": ..., "model": ...}
    exact.spec("mt-nlg-530b")          # catalog models and the documents' other shapes (SHAPES)
    exact.max_params(80e9, 5e9, layers=128)   # section 6.3 counted: 2.4e12, not 9.6e12

The workspace (2 GB) and PyTorch overhead (0.5 GB) terms have no exact count: they appear in both
columns unchanged, and the fits (analysis/fit.py) estimate them from measurements.
"""
from __future__ import annotations

from dataclasses import dataclass

from zo2bench import catalog
from zo2bench.analysis import formulas
from zo2bench.analysis.units import DEFAULT_READING

BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2}

# The documents' models that the catalog does not hold, by their published configurations. Counted as
# OPT-style decoders (learned positions, biases, 4h MLP, tied head), which is how their papers count them;
# the count of each is within 1% of its name (tests/test_formulas.py checks it).
SHAPES: dict[str, catalog.ModelSpec] = {
    # Brown et al. 2020, Table 2.1: 96 layers, d_model 12288, 96 heads, context 2048, GPT-2 BPE vocabulary.
    "gpt3-175b": catalog.ModelSpec("gpt3-175b", "opt", 12288, 96, 96, ffn=4 * 12288, vocab=50257, positions=2048),
    # bigscience/bloom config.json: 70 layers, hidden 14336, 112 heads, vocabulary 250880. BLOOM uses ALiBi,
    # not learned positions: the position table counted here (29 M) overstates it by 0.02%.
    "bloom-176b": catalog.ModelSpec("bloom-176b", "opt", 14336, 70, 112, ffn=4 * 14336, vocab=250880, positions=2048),
    # Smith et al. 2022 (MT-NLG): 105 layers, hidden 20480, 128 heads, sequence 2048, GPT-2 vocabulary.
    "mt-nlg-530b": catalog.ModelSpec("mt-nlg-530b", "opt", 20480, 105, 128, ffn=4 * 20480, vocab=50257,
                                     positions=2048),
    # Narayanan et al. 2021 (Megatron-LM at scale), Table 1, the 1T row: 128 layers, hidden 25600, 160 heads;
    # document 002 names only "1T" and "128" layers, so the hidden size is that paper's.
    "1t": catalog.ModelSpec("1t", "opt", 25600, 128, 160, ffn=4 * 25600, vocab=51200, positions=2048),
}


def spec(name: str) -> catalog.ModelSpec:
    """A catalog model or one of SHAPES."""
    return SHAPES[name] if name in SHAPES else catalog.resolve(name)


def block_bytes(name: str, dtype: str = "fp16") -> int:
    """Bytes of one transformer block's weights."""
    return spec(name).block_params() * BYTES_PER_PARAM[dtype]


@dataclass(frozen=True)
class Term:
    term: str               # embeddings | head | blocks | workspace | overhead | total
    approx_bytes: float     # formula 1.1 as written
    exact_bytes: float      # counted from the architecture
    approx_basis: str
    exact_basis: str

    @property
    def approximation_error(self) -> float:
        return self.approx_bytes - self.exact_bytes


def memory_comparison(name: str, *, dtype: str = "fp16", active_blocks: int = formulas.ACTIVE_BLOCKS,
                      reading: str = DEFAULT_READING) -> list[Term]:
    """Formula 1.1's terms as the document approximates them and as counted, for one model.

    Exact: the embedding tables (token, position, OPT-350M's projection; a tied head lives here) and the
    head (final norm, projections, an untied LM head) at `dtype`, and `active_blocks` blocks at `dtype`,
    the GPU-resident weights of a zo2 step. Workspace and overhead are the document's constants in both.
    """
    s = spec(name)
    b = BYTES_PER_PARAM[dtype]
    n = s.n_params()
    approx = formulas.gpu_memory_terms(n, s.layers, active_blocks=active_blocks, reading=reading)
    head_basis = "untied LM head + final norm" if not s.tied else "final norm (the tied head is in the embeddings)"
    terms = [
        Term("embeddings", approx.embeddings, s.embed_params() * b, "0.02 n",
             f"{s.embed_params():,} params x {b} B ({dtype})"),
        Term("head", approx.head, s.head_params() * b, "0.02 n", f"{s.head_params():,} params x {b} B: {head_basis}"),
        Term("blocks", approx.blocks, active_blocks * s.block_params() * b, f"{active_blocks} x n/(4L)",
             f"{active_blocks} x {s.block_params():,} params x {b} B"),
        Term("workspace", approx.workspace, approx.workspace, "2 GB", "2 GB (no count: the document's constant)"),
        Term("overhead", approx.overhead, approx.overhead, "0.5 GB", "0.5 GB (no count: the document's constant)"),
    ]
    terms.append(Term("total", sum(t.approx_bytes for t in terms), sum(t.exact_bytes for t in terms),
                      "formula 1.1", "sum of the counted terms"))
    return terms


def gpu_memory(name: str, **kw) -> float:
    """Formula 1.1 with exact counts, in bytes (keywords as memory_comparison)."""
    return memory_comparison(name, **kw)[-1].exact_bytes


def split_disagreement(measured_bytes: float, model: str, **kw) -> dict[str, float]:
    """measured − formula 1.1 = (exact − approximate) + (measured − exact), in bytes.

    "approximation": what the document's 0.02n and n/(4L) get wrong about this model's weights;
    "model": what the composition itself misses once the weights are counted exactly.
    """
    total = memory_comparison(model, **kw)[-1]
    return {"measured": measured_bytes, "approx": total.approx_bytes, "exact": total.exact_bytes,
            "approximation": total.exact_bytes - total.approx_bytes, "model": measured_bytes - total.exact_bytes}


def host_memory(name: str, dtype: str = "fp16") -> int:
    """Bytes of all the weights at `dtype`: what zo2 keeps in host memory (blocks) plus the resident rest."""
    return spec(name).n_params() * BYTES_PER_PARAM[dtype]


def required_pcie_bandwidth(name: str, t_compute_per_block: float, dtype: str = "fp16") -> float:
    """Formula 3.2 with the block's exact bytes: 2 × block bytes / compute seconds per block (bytes/s)."""
    return formulas.required_pcie_bandwidth(block_bytes(name, dtype), t_compute_per_block)


def max_params(gpu_bytes: float, overhead_bytes: float, *, layers: int, dtype: str = "fp16",
               active_blocks: int = formulas.ACTIVE_BLOCKS, resident_bytes: float = 0.0) -> float:
    """Section 6.3's bound counted in bytes: `active_blocks` blocks of n/L parameters at `dtype` must fit
    in gpu − overhead − resident (embeddings, head, activations). With the document's H100 numbers
    (80 GB, 5 GB, 128 layers, fp16, two blocks, nothing resident) this is 2.4e12 parameters; the
    document's formula gives 9.6e12 (formulas.max_model_size)."""
    per_block = (gpu_bytes - overhead_bytes - resident_bytes) / (active_blocks * BYTES_PER_PARAM[dtype])
    return max(0.0, per_block) * layers
