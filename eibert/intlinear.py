"""Integer execution of the INT8 linear layers: in the exported ONNX graph each one becomes
QuantizeLinear (the learned activation step, when activations are quantized) or DynamicQuantizeLinear
(per-tensor uint8, computed at run time) -> MatMulInteger on the int8 weights as learned -> one
float rescale (activation scale x the LSQ step sizes) -> bias. onnxruntime fuses that into its
integer kernels (DynamicQuantizeMatMul / MatMulIntegerToFloat), so the weights stay int8 in memory.

    with integer_graph():          # export_onnx does this
        torch.onnx.export(...)      # the integer ops above
        model(ids, mask)            # in torch: the same arithmetic, emulated (the tolerance reference)

Outside the context the layers compute as before (weight-only dequantization): the torch.export path
to TVM is unchanged.
"""

import contextlib
import threading

import torch
from torch.onnx import symbolic_helper

_STATE = threading.local()
FLOAT, INT8 = 1, 3  # onnx TensorProto data types


def integer_on() -> bool:
    return getattr(_STATE, "on", False)


@contextlib.contextmanager
def integer_graph():
    old = integer_on()
    _STATE.on = True
    try:
        yield
    finally:
        _STATE.on = old


def _dynamic_quant(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ONNX DynamicQuantizeLinear: uint8, one scale and zero point for the whole tensor."""
    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    scale = torch.clamp((hi - lo) / 255.0, min=torch.finfo(torch.float32).tiny)
    zp = torch.clamp(torch.round(-lo / scale), 0, 255)
    return torch.clamp(torch.round(x / scale) + zp, 0, 255), scale, zp


def emulate(x, w_int8, scale, bias, act_step):
    """What the integer graph computes, in float arithmetic (exact up to float rounding of the sums)."""
    if act_step is not None:
        q, s, zp = torch.clamp(torch.round(x / act_step), -128, 127), act_step, 0.0
    else:
        q, s, zp = _dynamic_quant(x)
    acc = torch.matmul(q - zp, w_int8.to(torch.float32).t())
    y = acc * (s * scale.reshape(-1))
    return y if bias is None else y + bias


class IntLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_int8, scale, bias, act_step):
        return emulate(x, w_int8, scale, bias, act_step)

    @staticmethod
    def symbolic(g, x, w_int8, scale, bias, act_step):
        w_t = g.op("Transpose", w_int8, perm_i=[1, 0])  # (in, out): folded into an int8 initializer at load
        if symbolic_helper._is_none(act_step):
            xq, xs, xzp = g.op("DynamicQuantizeLinear", x, outputs=3)
        else:
            xs = act_step
            xzp = g.op("Constant", value_t=torch.tensor(0, dtype=torch.int8))
            xq = g.op("QuantizeLinear", x, xs, xzp)
        wzp = g.op("Constant", value_t=torch.tensor(0, dtype=torch.int8))
        acc = g.op("Cast", g.op("MatMulInteger", xq, w_t, xzp, wzp), to_i=FLOAT)
        flat = g.op("Reshape", scale, g.op("Constant", value_t=torch.tensor([-1], dtype=torch.int64)))
        y = g.op("Mul", acc, g.op("Mul", xs, flat))
        return y if symbolic_helper._is_none(bias) else g.op("Add", y, bias)


# ---- INT4 ----------------------------------------------------------------------------------------------------


def unpack_int4(packed: torch.Tensor, k: int) -> torch.Tensor:
    """(out, ceil(k/2)) uint8, two codes a byte (code = q + 8, the even input in the low nibble) -> (out, k) int32 q."""
    p = packed.to(torch.int32)
    hi = torch.div(p, 16, rounding_mode="floor")
    return torch.stack((p - hi * 16, hi), dim=-1).reshape(p.shape[0], -1)[:, :k] - 8


class Int4Codes(torch.autograd.Function):
    """(out, ceil(k/2)) uint8, two codes a byte (code = q + 8, the even input in the low nibble) -> (out, k) int8 q.
    In ONNX: a few integer ops on the packed constant, which onnxruntime folds at load into an int8 initializer
    (the file keeps 4 bits a weight; the INT8 kernels run the layer)."""

    @staticmethod
    def forward(ctx, packed, k: int):
        return unpack_int4(packed, k).to(torch.int8)

    @staticmethod
    def symbolic(g, packed, k: int):
        n = symbolic_helper._get_tensor_sizes(packed)[0]
        u8 = lambda v: g.op("Constant", value_t=torch.tensor(v, dtype=torch.uint8))  # noqa: E731
        i64 = lambda v: g.op("Constant", value_t=torch.tensor(v, dtype=torch.int64))  # noqa: E731
        # uint8 all the way (one byte an intermediate): onnxruntime's folding at load once left a 4-layer model
        # ~32 MB more resident when these ran in int32
        hi = g.op("Div", packed, u8(16))  # non-negative: truncation is the floor
        lo = g.op("Sub", packed, g.op("Mul", hi, u8(16)))
        both = g.op("Concat", g.op("Unsqueeze", lo, i64([2])), g.op("Unsqueeze", hi, i64([2])), axis_i=2)
        codes = g.op("Reshape", both, i64([n, -1]))
        if k % 2:
            codes = g.op("Slice", codes, i64([0]), i64([k]), i64([1]))
        return g.op("Sub", g.op("Cast", codes, to_i=INT8), g.op("Constant", value_t=torch.tensor(8, dtype=torch.int8)))


# ---- INT4: com.microsoft MatMulNBits -------------------------------------------------------------------------

NBITS_ACCURACY = 4  # MatMulNBits' accuracy level 4: int8 activations per block, integer dot products
NBITS_MAX_BLOCK = 256  # the CPU provider quantizes activations in blocks of at most this many inputs


def nbits_block(k: int) -> int | None:
    """The MatMulNBits block for `k` inputs: the largest power of two <= 256 dividing k, at least 16; None: none fits."""
    b = NBITS_MAX_BLOCK
    while b >= 16 and k % b:
        b //= 2
    return b if b >= 16 else None


def _block_quant(x: torch.Tensor, block: int) -> torch.Tensor:
    """x as the CPU provider hands it to its int8 kernel: symmetric int8 per block of `block` inputs, dequantized."""
    xb = x.reshape(*x.shape[:-1], x.shape[-1] // block, block)
    sc = xb.abs().amax(-1, keepdim=True) / 127.0
    q = torch.where(sc > 0, torch.round(xb / torch.where(sc > 0, sc, torch.ones_like(sc))), torch.zeros_like(xb))
    return (q * sc).reshape(x.shape)


class Int4Linear(torch.autograd.Function):
    """y = x @ W.T + b with W (out, in) in INT4 codes two per byte (code = q + 8), one step per row, per block of
    `block` inputs of a row, or one in all."""

    @staticmethod
    def forward(ctx, x, w_packed, scale, bias, act_step, block: int, k: int):
        if act_step is not None:
            x = torch.clamp(torch.round(x / act_step), -127, 127) * act_step
        w = unpack_int4(w_packed, k).to(torch.float32)
        n, nb = scale.shape
        per = scale if nb == 1 else scale[:, :, None].expand(n, nb, k // nb).reshape(n, k)  # block-wise steps
        y = torch.matmul(_block_quant(x, min(block, NBITS_MAX_BLOCK)), (w * per).t())
        return y if bias is None else y + bias

    @staticmethod
    def symbolic(g, x, w_packed, scale, bias, act_step, block: int, k: int):
        n = symbolic_helper._get_tensor_sizes(w_packed)[0]
        if not symbolic_helper._is_none(act_step):
            r = g.op("Round", g.op("Div", x, act_step))
            lo, hi = (g.op("Constant", value_t=torch.tensor(v, dtype=torch.float32)) for v in (-127.0, 127.0))
            x = g.op("Mul", g.op("Clip", r, lo, hi), act_step)
        const = lambda v: g.op("Constant", value_t=torch.tensor(v, dtype=torch.int64))  # noqa: E731
        b = g.op("Reshape", w_packed, const([n, k // block, block // 2]))  # the same bytes in MatMulNBits' layout
        s = g.op("Reshape", g.op("Expand", scale, const([n, k // block])), const([-1]))
        y = g.op("com.microsoft::MatMulNBits", x, b, s, K_i=k, N_i=n, bits_i=4, block_size_i=block,
                 accuracy_level_i=NBITS_ACCURACY)
        return y if symbolic_helper._is_none(bias) else g.op("Add", y, bias)
