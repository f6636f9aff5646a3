"""The physical models fitted to measured rows: what one configuration needs in memory and in time.

    shape = Shape.from_row(row)                        # model shape, mode, dtype, batch, seq of a sweep row
    shape = Shape(catalog.get("opt-66b"), "zo2", "fp16", batch=1, seq=2048)
    memory_models("zo2", "nvml_process")               # (physical, document's 1.1) models of that view
    TIME_MODELS["overlap"].inputs(shape, calibration)  # (compute, device-memory, both-ways, one-way-sum) floors

A Model is data: its parameters (named, with units and starting values), a function from a shape (and, for
time, a calibration) to the model's inputs, and a function from inputs and parameters to a prediction. Fitting
(analysis.fit) never needs to know which model it holds.

Memory (bytes), per view of analysis.models.VIEWS. Every term is a byte count derived from the exact shape,
times a fitted dimensionless coefficient, plus a fitted constant:
  * GPU, zo2:  c_w x resident weights (embeddings, head, resident blocks) + c_s x one block (streaming slots)
               + c_a x batch*seq*hidden*bytes (activations) + fixed context
  * GPU, mezo: c_w x all weights + c_a x activations + fixed;  fo-*: c_w x all weights (model states, so about
               9 for AdamW with fp32 masters) + c_a x layers*batch*seq*hidden*bytes (kept for backward) + fixed
  * host RSS and pinned: c_h x weights held on the host (zo2: the streamed blocks; others: all weights) + fixed
The document's own form (002 section 1.1), fitted with the same machinery on the GPU views of zo2:
  GPU(n) = e x n + k x n/(4L) + (workspace + overhead)

Time (seconds), from the floors of zo2bench.bench.floors over the machine's calibration. C: FLOPs over the
calibrated matmul rate; M: all weight bytes over the calibrated device-memory rate (the perturbation and
update passes read and write every weight); X: bytes moved both ways over the both-directions-at-once rate;
U + O: the same bytes one direction after the other at the one-way rates. G = a*C + d*M + c is the GPU's
own work (c: launches and synchronisation, a fixed time per step).
  * overlap:      max(G, X)          the two copy directions overlap each other and the GPU work
  * overlap-link: max(G, b*X)        the same with the link's efficiency b fitted (b = 1: at the floor)
  * document:     G + max(0, U + O - G)   002 section 2.1: upload and offload in series, minus compute
  * serial:       G + U + O          nothing overlaps: an upper bound
mezo moves nothing, so for mezo rows every time model is G + c and a joint fit of zo2 and mezo rows tests
exactly what offloading adds. The document's form and the overlap model differ only in their transfer term:
the serial one-way sum against the both-directions floor (both with the link at its calibrated rate).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from zo2bench import catalog
from zo2bench.analysis import exact
from zo2bench.bench import floors as fl
from zo2bench.catalog import ModelSpec
from zo2bench.config import DTYPE_BYTES
from zo2bench.errors import UserError

INF = math.inf

# The memory views a sweep row records (memory.views.<phase>.<field>), by the name the analysis uses.
VIEWS = {
    "torch_allocated": ("torch_peak_allocated_bytes", "torch allocated", "gpu"),
    "nvml_process": ("nvml_process_peak_bytes", "NVML process", "gpu"),
    "nvml_device": ("nvml_device_peak_bytes", "NVML device", "gpu"),
    "host_rss": ("host_rss_peak_bytes", "host RSS", "host"),
    "pinned": ("pinned_peak_bytes", "pinned host", "host"),
}


# Sizes the documents project to that no run here reaches; mt-nlg-530b and 1t are exact.SHAPES (the shapes
# of their papers, as OPT-style decoders).
PROJECTION_MODELS = ("opt-66b", "opt-175b", "mt-nlg-530b", "1t")


def spec_of(name: str) -> ModelSpec:
    """A catalog model or one of the documents' shapes (analysis.exact.SHAPES); UserError if neither."""
    return exact.SHAPES[name] if name in exact.SHAPES else catalog.get(name)


# The documents' formulas, size classes and projected models are OPT-shaped decoders. Rows of other families
# (Llama-style: another vocabulary, grouped-query attention, a gated MLP) are reported beside them, but
# neither fitted with them nor judged against a size class they were not measured for.
DOCUMENT_FAMILY = "opt"


def of_document_family(name: str) -> bool:
    """Whether a model (catalog name or documents' shape) is of DOCUMENT_FAMILY; False when unknown."""
    try:
        return spec_of(name).family == DOCUMENT_FAMILY
    except Exception:  # UserError, or a local directory whose config cannot be read here
        return False


@dataclass(frozen=True)
class Shape:
    """One configuration: what every model here needs to know about a row or a what-if."""

    spec: ModelSpec
    mode: str
    dtype: str
    batch: int
    seq: int
    resident_blocks: int = 0      # zo2: decoder blocks kept on the GPU instead of streamed
    writeback_every: int = 1      # zo2: a streamed block goes back to host memory every this many visits

    @classmethod
    def from_row(cls, row) -> Shape:
        """The shape of a sweep row (UserError when its model is not one the catalog knows)."""
        cell = row.get("cell") or {}
        mode = cell.get("mode")
        resident = (row.get("offload", "resident_blocks") or 0) if mode == "zo2" else 0
        k = (row.get("config", "writeback_every") or 1) if mode == "zo2" else 1
        return cls(catalog.get(cell.get("model")), mode, cell.get("dtype"), int(cell.get("batch")),
                   int(cell.get("seq")), int(resident), int(k))

    def replace(self, **kw) -> Shape:
        return dataclasses.replace(self, **kw)

    @property
    def n_params(self) -> int:
        return self.spec.n_params()

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def bpp(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def weight_bytes(self) -> float:
        return float(self.n_params * self.bpp)

    @property
    def block_bytes(self) -> float:
        return float(self.spec.block_params() * self.bpp)

    @property
    def streamed_bytes(self) -> float:
        """Bytes of the blocks kept in host memory and streamed every step (zo2); 0 for the other modes."""
        return (self.spec.layers - self.resident_blocks) * self.block_bytes if self.mode == "zo2" else 0.0

    @property
    def gpu_weight_bytes(self) -> float:
        """Weights resident on the GPU: zo2 keeps embeddings, head and its resident blocks; the rest keep all."""
        return self.weight_bytes - self.streamed_bytes

    @property
    def host_weight_bytes(self) -> float:
        return self.streamed_bytes if self.mode == "zo2" else self.weight_bytes

    @property
    def activation_bytes(self) -> float:
        """One hidden vector per token: batch * seq * hidden * bytes (multiples of it are fitted)."""
        return float(self.tokens * self.spec.hidden * self.bpp)


@dataclass(frozen=True)
class Param:
    name: str
    unit: str        # of the fitted value: "x" (a dimensionless multiple), "bytes", "s", "bytes/param"
    p0: float
    lower: float = -INF
    upper: float = INF
    text: str = ""


@dataclass(frozen=True)
class Model:
    name: str
    title: str
    formula: str
    params: tuple[Param, ...]
    inputs: Callable          # (shape, calibration or None) -> tuple of floats
    f: Callable               # (X: array (n, k), p: array) -> array (n,)
    source: str = "physical"  # "physical" or "document"
    needs_calibration: bool = False

    def x(self, shapes, calibration=None) -> np.ndarray:
        return np.array([self.inputs(s, calibration) for s in shapes], dtype=float).reshape(len(shapes), -1)


def linear(name, title, formula, terms, source="physical") -> Model:
    """A model linear in its parameters: sum of coef_i * term_i(shape) + a constant (bytes)."""
    # every term is a byte count that can only add memory: its coefficient is bounded below by 0
    params = tuple(Param(n, u, p0, 0.0, INF, t) for n, u, p0, t, _ in terms) + (
        Param("fixed", "bytes", 5e8, text="fixed context (CUDA context, allocator, runtime)"),)
    fns = tuple(fn for *_, fn in terms)
    return Model(name, title, formula, params, lambda s, cal=None: tuple(fn(s) for fn in fns) + (1.0,),
                 lambda X, p: X @ p, source)


_WEIGHTS_GPU = ("c_w", "x", 1.0, "GPU-resident weights", lambda s: s.gpu_weight_bytes)
_ACT = ("c_a", "x", 4.0, "activations per batch*seq*hidden*bytes", lambda s: s.activation_bytes)

MEMORY_TERMS = {
    ("gpu", "zo2"): (_WEIGHTS_GPU, ("c_s", "x", 2.0, "streaming slots, in blocks", lambda s: s.block_bytes), _ACT),
    ("gpu", "mezo"): (_WEIGHTS_GPU, _ACT),
    ("gpu", "fo"): (("c_w", "x", 8.0, "model states per weight byte", lambda s: s.weight_bytes),
                    ("c_a", "x", 10.0, "activations kept for backward, per layer*batch*seq*hidden*bytes",
                     lambda s: s.activation_bytes * s.spec.layers)),
    ("host", "any"): (("c_h", "x", 1.0, "weights held in host memory", lambda s: s.host_weight_bytes),),
}
MEMORY_FORMULAS = {
    ("gpu", "zo2"): "c_w·W_gpu + c_s·W_block + c_a·B·T·H·bytes + fixed",
    ("gpu", "mezo"): "c_w·W + c_a·B·T·H·bytes + fixed",
    ("gpu", "fo"): "c_w·W + c_a·L·B·T·H·bytes + fixed",
    ("host", "any"): "c_h·W_host + fixed",
}


def _group(view: str, mode: str) -> tuple[str, str]:
    where = VIEWS[view][2]
    if where == "host":
        return where, "any"
    return where, "fo" if mode.startswith("fo-") else mode


def document_memory_model() -> Model:
    """Document 002 section 1.1 with its constants free: e·n + k·n/(4L) + (M_workspace + M_overhead).

    The document's values: e = 0.04 bytes per parameter (embeddings 0.02 n + head 0.02 n), k = 1 to 2
    active blocks, workspace 2 GB + overhead 0.5 GB; n counts parameters and the result is read as bytes.
    """
    terms = (("e", "bytes/param", 0.04, "embeddings + head, per parameter", lambda s: float(s.n_params)),
             ("k", "bytes/param", 2.0, "active blocks, per n/(4L) parameters",
              lambda s: s.n_params / (4.0 * s.spec.layers)))
    m = linear("document", "002 §1.1 (constants fitted)", "e·n + k·n/(4L) + workspace+overhead", terms, "document")
    return Model(m.name, m.title, m.formula, m.params[:2] + (
        Param("workspace+overhead", "bytes", 2.5e9, text="M_workspace + M_overhead"),), m.inputs, m.f, m.source)


def memory_models(mode: str, view: str) -> tuple[Model, ...]:
    """The physical model of a view in a mode, and for zo2 on a GPU view the document's form beside it."""
    if view not in VIEWS:
        raise UserError(f"unknown memory view '{view}'; one of {', '.join(VIEWS)}")
    g = _group(view, mode)
    if g not in MEMORY_TERMS:
        return ()
    phys = linear("physical", f"physical ({VIEWS[view][1]})", MEMORY_FORMULAS[g], MEMORY_TERMS[g])
    return (phys, document_memory_model()) if g == ("gpu", "zo2") else (phys,)


# -- time ------------------------------------------------------------------------------------------------------

def time_inputs(shape: Shape, calibration: dict) -> tuple[float, float, float, float]:
    """(C, M, X, U+O) in seconds: compute, device-memory, both-ways transfer and one-way-sum floors."""
    f = fl.floors(shape.spec, shape.batch, shape.seq, shape.mode, shape.dtype, calibration, shape.resident_blocks)
    dev = fl.figure(calibration, "device_mem_rw_gb_per_s")
    if f["compute_s"] is None or dev is None:
        raise UserError("the calibration lacks the matmul or device-memory figure the time models need")
    b = f["bytes"]
    h2d, d2h = fl.figure(calibration, fl.H2D_KEY), fl.figure(calibration, fl.D2H_KEY)
    if b["total_bytes"] and (h2d is None or d2h is None or f["transfer_s"] is None):
        raise UserError("the calibration lacks the pinned copy figures the time models need")
    uo = b["h2d_bytes"] / (h2d * 1e9) + b["d2h_bytes"] / (d2h * 1e9) if b["total_bytes"] else 0.0
    return f["compute_s"], shape.weight_bytes / (dev * 1e9), f["transfer_s"] or 0.0, uo


_A = Param("a", "x", 1.3, 0.0, INF, "compute time over the matmul floor")
_D = Param("d", "x", 4.0, 0.0, INF, "weight passes over the device-memory floor")
_C = Param("c", "s", 0.01, 0.0, INF, "fixed GPU time per step (launches, synchronisation)")
_B = Param("b", "x", 1.0, 0.0, INF, "transfer time over the both-directions floor")


def _gpu(X, p):
    """G, the GPU's own work: a·C + d·M + c."""
    return p[0] * X[:, 0] + p[1] * X[:, 1] + p[2]


TIME_MODELS = {m.name: m for m in (
    Model("overlap", "overlap (transfer at the floor)", "max(G, X)", (_A, _D, _C), time_inputs,
          lambda X, p: np.maximum(_gpu(X, p), X[:, 2]), needs_calibration=True),
    Model("overlap-link", "overlap (link efficiency fitted)", "max(G, b·X)", (_A, _D, _C, _B),
          time_inputs, lambda X, p: np.maximum(_gpu(X, p), p[3] * X[:, 2]), needs_calibration=True),
    Model("document", "002 §2.1 (upload + offload − compute)", "G + max(0, U + O − G)", (_A, _D, _C),
          time_inputs, lambda X, p: _gpu(X, p) + np.maximum(0.0, X[:, 3] - _gpu(X, p)),
          source="document", needs_calibration=True),
    Model("serial", "serial (nothing overlaps)", "G + U + O", (_A, _D, _C), time_inputs,
          lambda X, p: _gpu(X, p) + X[:, 3], needs_calibration=True),
)}
FIRST_ORDER_TIME = Model("first-order", "first order (compute + optimizer passes)", "G", (_A, _D, _C),
                         time_inputs, lambda X, p: _gpu(X, p), needs_calibration=True)
