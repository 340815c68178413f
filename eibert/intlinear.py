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
FLOAT = 1  # onnx TensorProto.FLOAT


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
