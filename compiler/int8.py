"""INT8 dense layers computed with integer dot products in TVM: x86 AVX512-VNNI `vpdpbusd`, aarch64
`sdot` (`+dotprod`: Cortex-A55/A76 and later) and, on NEON-only cores (Cortex-A53/A72), `smull` +
`saddlp` widening multiply-accumulate.

    mod = from_exported_program(ep)                  # the artifact's dense layers: add(bias, matmul(x, W_int8 * scale).T)
    mod, layers = rewrite_int8_dense(mod, "sdot")    # each becomes quantize (call_tir) -> integer dense (call_tir)
    # layers: [{"kernel": "int8_dense_sdot_m64_n256_k256", "m": 64, "n": 256, "k": 256}, ...]

The pattern is what the artifact's `DeployLinear` exports to: `astype(W int8 const) * scale const`,
transposed, a matmul with the 2-D activations, plus the bias. The rewrite keeps the learned int8
weights and per-channel steps exactly: weights packed as [N/L, K/4, L, 4] int8 constants (L = 16 output
lanes on x86, 4 on aarch64); the activations quantized per call with a per-tensor scale and zero point
(what onnxruntime's DynamicQuantizeLinear does in the artifact's integer graph) to uint8 for
`vpdpbusd`, and to uint8 - 128 as int8 for the signed ARM instructions, whose 128 x column sums are
folded into the epilogue; int32 accumulation; an epilogue (acc + (shift - zp) * column sum) * (scale *
w_step) + bias. TVM's own VNNI intrinsic passes operand types the LLVM in this wheel rejects, so a
corrected copy is registered here; the ARM ones are TVM's. A layer whose shape does not tile keeps its
float form. Only compiler/build.py's child imports this.
"""

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, s_tir, te
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard
from tvm.s_tir import TensorIntrin
from tvm.s_tir.tensor_intrin.arm_cpu import ARM_DOT_4x4_i8_NEON_INTRIN, ARM_DOT_4x4_i8_SDOT_INTRIN
from tvm.s_tir.tensor_intrin.x86 import dot_product_16x4_u8i8i32_desc as _desc
from tvm.script import tirx as T

INTRIN = "dot_16x4_vnni_llvm22"
KERNEL_PREFIX = "int8_dense"


@dataclass(frozen=True)
class Kernel:
    intrin: str  # a registered TensorIntrin: C[lanes] int32 += A[4] . B[lanes, 4]
    lanes: int  # output columns per instruction
    act: str  # activation dtype the instruction reads: uint8, or int8 (= uint8 - 128)
    mi: int  # rows per micro-kernel
    nj: int  # instructions per row in the micro-kernel

    @property
    def shift(self) -> int:
        return 128 if self.act == "int8" else 0


# int8_path (devices/cpufeatures.py) -> kernel; ARM: 4 rows x 4 x 4 lanes = 16 int32x4 accumulators of 32 registers
KERNELS = {
    "vnni": Kernel(INTRIN, 16, "uint8", 8, 2),
    "sdot": Kernel(ARM_DOT_4x4_i8_SDOT_INTRIN, 4, "int8", 4, 4),
    "neon": Kernel(ARM_DOT_4x4_i8_NEON_INTRIN, 4, "int8", 4, 4),
}


@T.prim_func(s_tir=True)
def _vnni_impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
               C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), C.vload([0], dtype="int32x16"),
            T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16), dtype="uint8x64"),
            B.vload([0, 0], dtype="int8x64"), dtype="int32x16")


def _register() -> None:
    if TensorIntrin.get(INTRIN, allow_missing=True) is None:
        TensorIntrin.register(INTRIN, _desc, _vnni_impl)


def quant_func(M: int, K: int, act: str = "uint8"):
    """X f32[M,K] -> (Q [M,K], P f32[2] = [scale, zero point]): onnx DynamicQuantizeLinear; Q is its uint8, or
    that minus 128 as int8 when `act` is int8."""
    shift = 128.0 if act == "int8" else 0.0
    X = te.placeholder((M, K), "float32", name="X")
    r = [te.reduce_axis((0, M)), te.reduce_axis((0, K)), te.reduce_axis((0, M)), te.reduce_axis((0, K))]
    mn = te.compute((1,), lambda _: te.min(X[r[0], r[1]], axis=r[:2]), name="mn")
    mx = te.compute((1,), lambda _: te.max(X[r[2], r[3]], axis=r[2:]), name="mx")

    def p(t):
        lo, hi = te.min(mn[0], 0.0), te.max(mx[0], 0.0)
        s = te.max((hi - lo) / 255.0, 1e-12)
        return tvm.tirx.Select(t == 0, s, te.max(te.min(te.round(0.0 - lo / s), 255.0), 0.0))

    P = te.compute((2,), p, name="P")
    Q = te.compute((M, K), lambda i, k: (te.max(te.min(te.round(X[i, k] / P[0]) + P[1], 255.0), 0.0) - shift).astype(act),
                   name="Q")
    sch = s_tir.Schedule(te.create_prim_func([X, Q, P]))
    for name in ("mn", "mx"):  # rfactor -> vector min/max, then a short tail
        _, _, rk = sch.get_loops(sch.get_sblock(name))
        rf = sch.rfactor(sch.split(rk, [None, 64 if K % 64 == 0 else 4])[1], 0)
        _, ri, rko, rki = sch.get_loops(rf)
        sch.reorder(ri, rko, rki)
        sch.vectorize(rki)
        sch.decompose_reduction(rf, ri)
    i, k = sch.get_loops(sch.get_sblock("Q"))
    sch.vectorize(sch.split(sch.fuse(i, k), [None, 16])[1])
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def dense_func(M: int, N: int, K: int, kern: Kernel = KERNELS["vnni"]):
    """out f32[M,N] = (Q . W packed + (shift - zp) * colsum) * (scale * ws) + bias, int32 accumulation by `kern`."""
    _register()
    L = kern.lanes
    Q = te.placeholder((M, K), name="Q", dtype=kern.act)
    W = te.placeholder((N // L, K // 4, L, 4), name="W", dtype="int8")
    k = te.reduce_axis((0, K), name="k")
    acc = te.compute((M, N), lambda i,
                     j: te.sum(Q[i, k].astype("int32") * W[j // L, k // 4, j % L, k % 4].astype("int32"), axis=k),
                     name="acc")
    cs, ws, bias = (te.placeholder((N,), name=n, dtype=d)
                    for n, d in (("colsum", "int32"), ("ws", "float32"), ("bias", "float32")))
    P = te.placeholder((2,), name="P", dtype="float32")
    out = te.compute((M, N), lambda i,
                     j: (acc[i, j] + (kern.shift - P[1].astype("int32")) * cs[j]).astype("float32") * (P[0] * ws[j])
                     + bias[j], name="out")
    sch = s_tir.Schedule(te.create_prim_func([Q, W, cs, ws, bias, P, out]))
    b, ep = sch.get_sblock("acc"), sch.get_sblock("out")
    i, j, kk = sch.get_loops(b)
    io, ii = sch.split(i, [None, kern.mi])
    jo, jm, ji = sch.split(j, [None, kern.nj, L])
    ko, ki = sch.split(kk, [None, 4])
    sch.reorder(io, jo, ko, ii, jm, ji, ki)  # micro-kernel: mi x nj vector accumulators, k outer
    sch.reverse_compute_at(ep, io)  # the epilogue per row block
    sch.parallel(io)
    sch.decompose_reduction(b, ko)
    sch.tensorize(ji, kern.intrin)
    sch.unroll(ii)
    sch.unroll(jm)
    sch.vectorize(sch.get_loops(sch.get_sblock("acc_init"))[-1])
    sch.vectorize(sch.split(sch.get_loops(ep)[-1], [None, L])[1])
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def pack_weight(w: np.ndarray, lanes: int = 16) -> np.ndarray:
    """[N, K] int8 -> [N/lanes, K/4, lanes, 4], the layout the kernel's lanes x 4 dot product reads."""
    n, k = w.shape
    return np.ascontiguousarray(w.reshape(n // lanes, lanes, k // 4, 4).transpose(0, 2, 1, 3))


def _array(c) -> np.ndarray:
    v = getattr(c, "data", None) or c.value  # relax.Constant (data) or this release's ir.GenericConst (value)
    return v.numpy()


def _tiles(m: int, n: int, k: int, kern: Kernel) -> bool:
    return m % kern.mi == 0 and n % (kern.lanes * kern.nj) == 0 and k % 4 == 0


def rewrite_int8_dense(mod, path: str = "vnni"):
    """(module with every tiling int8 dense layer on the integer kernel of `path` (a KERNELS key), [the layers
    rewritten])."""
    kern = KERNELS[path]
    x, w, s, b = wildcard(), is_const(), is_const(), is_const()
    dense = is_op("relax.matmul")(x, is_op("relax.permute_dims")(is_op("relax.multiply")(is_op("relax.astype")(w), s)))
    pattern = is_op("relax.add")(b, dense)
    funcs: dict[tuple, tuple] = {}
    layers: list[dict] = []

    def fit(matches):
        """(m, n, k, weights, steps, bias) of a match the kernel can take, else None."""
        wt, st, bt = (_array(matches[p]) for p in (w, s, b))
        xs = matches[x].ty
        if wt.dtype != np.int8 or wt.ndim != 2 or len(xs.shape) != 2 or bt.ndim != 1:
            return None
        (m, k), n = (int(d) for d in xs.shape), wt.shape[0]
        if not _tiles(m, n, k, kern) or st.size not in (1, n) or wt.shape[1] != k:
            return None
        return m, n, k, wt, st, bt

    def collect(expr, matches):
        if (f := fit(matches)) is not None:
            funcs.setdefault(f[:3], None)
        return expr

    def rewriter(expr, matches):
        f = fit(matches)
        if f is None:
            return expr
        m, n, k, wt, st, bt = f
        gq, gd = funcs[(m, n, k)]
        q = relax.call_tir(gq, [matches[x]], [relax.TensorType((m, k), kern.act), relax.TensorType((2,), "float32")])
        steps = np.broadcast_to(st.reshape(-1).astype(np.float32), (n,)).copy()
        consts = [relax.const(pack_weight(wt, kern.lanes)), relax.const(wt.astype(np.int32).sum(1).astype(np.int32)),
                  relax.const(steps),
                  relax.const(bt.astype(np.float32))]
        layers.append({"kernel": gd.name_hint, "m": m, "n": n, "k": k})
        return relax.call_tir(gd, [relax.TupleGetItem(q, 0), *consts, relax.TupleGetItem(q, 1)],
                              relax.TensorType((m, n), "float32"))

    mains = [(gv, f) for gv, f in mod.functions_items() if isinstance(f, relax.Function)]
    for _, func in mains:
        rewrite_call(pattern, collect, func)
    bb = relax.BlockBuilder(mod)
    for m, n, k in list(funcs):
        qn, dn = f"int8_quantize_m{m}_k{k}", f"{KERNEL_PREFIX}_{path}_m{m}_n{n}_k{k}"
        funcs[(m, n, k)] = (bb.add_func(quant_func(m, k, kern.act).with_attr("global_symbol", qn), qn),
                            bb.add_func(dense_func(m, n, k, kern).with_attr("global_symbol", dn), dn))
    out = bb.get()
    for gv, func in mains:
        out[gv] = rewrite_call(pattern, rewriter, func)
    # layers that read the same activations (Q, K and V) share one quantization of them
    out = relax.transform.EliminateCommonSubexpr()(out)
    return relax.transform.DeadCodeElimination()(out), layers
