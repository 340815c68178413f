"""The deployable form of a quantized student: packed low-bit weight buffers and their steps, the graph that is
exported (eibert.export) and compiled (compiler/, via torch.export).

    from eibert.deploy_layers import to_deploy
    deploy = to_deploy(qmodel)     # int8 (or packed int4) weight buffers + fp32 scales

`to_deploy` swaps every QuantLinear / QuantEmbedding of eibert.quant for its deployable layer: DeployLinear (INT8,
MatMulInteger in ONNX), DeployLinear4 (INT4, two weights a byte) and DeployEmbedding; with `half_float`, float
embeddings and LayerNorms become FP16. `int4_rows_as_int8` hands INT4 layers to TVM as int8 values.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from eibert.intlinear import Int4Codes, Int4Linear, IntLinear, integer_on, nbits_block, unpack_int4
from eibert.quant import QuantEmbedding, QuantLinear, per_input


class DeployLinear(nn.Module):
    """int8 weights (out, in) and fp32 scales (out, 1). Exported to ONNX as integer ops (MatMulInteger on
    the int8 weights); in torch and for torch.export (TVM), dequantized and run in float."""

    def __init__(self, q: QuantLinear):
        super().__init__()
        step = q.step.detach().clone()  # (out, 1) per channel, (1, 1) per tensor or module
        self.register_buffer("w_int8", torch.clamp(torch.round(q.weight / step), -q.qp, q.qp).to(torch.int8))
        self.register_buffer("scale", step)
        self.register_buffer("bias", q.bias.detach().clone() if q.bias is not None else None)
        self.register_buffer("act_step", q.act_step.detach().clone() if q.act_step is not None else None)

    @classmethod
    def of(cls, w_int8: torch.Tensor, scale: torch.Tensor, bias, act_step) -> "DeployLinear":
        """The layer from its int8 values and per-row (or single) steps."""
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        for name, t in (("w_int8", w_int8), ("scale", scale), ("bias", bias), ("act_step", act_step)):
            m.register_buffer(name, t)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if integer_on():  # exported as integer ops (eibert/intlinear.py)
            return IntLinear.apply(x, self.w_int8, self.scale, self.bias, self.act_step)
        if self.act_step is not None:
            x = torch.clamp(torch.round(x / self.act_step), -127, 127) * self.act_step
        return F.linear(x, self.w_int8.to(torch.float32) * self.scale, self.bias)


class DeployEmbedding(nn.Module):
    def __init__(self, q: QuantEmbedding):
        super().__init__()
        step = q.step.detach().clone()  # (V, 1) per row, or (1, 1)
        self.register_buffer("w_int8", torch.clamp(torch.round(q.weight / step), -q.qp, q.qp).to(torch.int8))
        self.register_buffer("scale", step)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # Gather the int8 rows first, then dequantize only those: (B, T, E)
        rows = F.embedding(ids, self.w_int8).to(torch.float32)
        if self.scale.shape[0] == 1:  # static shape: one branch is traced
            return rows * self.scale[0, 0]
        return rows * F.embedding(ids, self.scale)


INT4_KERNELS = ("int8", "nbits")  # how an INT4 layer with one step per row runs under onnxruntime (see DeployLinear4)


class DeployLinear4(nn.Module):
    """INT4 weights, two per byte (offset binary: code = q + 8 in 1..15; consecutive inputs share a byte, the even
    one in the low nibble: MatMulNBits' layout). In ONNX, with one step per row (per channel or per tensor) and
    `kernel` "int8" (the default, chosen by measurement: bench/int4.py), the packed bytes are unpacked by integer
    ops on constants, which onnxruntime folds at load into an int8 matrix for the INT8 layers' MatMulInteger
    kernels (the file holds 4 bits a weight, memory 8); with block-wise steps, or `kernel` "nbits", they run as
    com.microsoft MatMulNBits (packed weights, int8 activations per block, integer dot products). For
    torch.export (TVM) they are unpacked in the graph and run in float."""

    def __init__(self, q: QuantLinear, kernel: str = "int8"):
        super().__init__()
        if kernel not in INT4_KERNELS:
            raise ValueError(f"INT4 kernel {kernel!r}; allowed: {', '.join(INT4_KERNELS)}")
        step = q.step.detach().clone()
        k = q.weight.shape[1]
        codes = (torch.clamp(torch.round(q.weight.detach() / per_input(step, k)), -q.qp, q.qp) + 8).to(torch.int32)  # (out, in)
        if codes.shape[1] % 2:
            codes = F.pad(codes, (0, 1), value=8)
        self.in_features = k
        self.block = k // step.shape[1] if step.shape[1] > 1 else nbits_block(k)  # block-wise steps: MatMulNBits' blocks
        self.register_buffer("w_uint4x2", (codes[:, 0::2] + 16 * codes[:, 1::2]).to(torch.uint8))  # (out, ceil(in/2))
        self.register_buffer("scale", step)
        self.register_buffer("bias", q.bias.detach().clone() if q.bias is not None else None)
        self.register_buffer("act_step", q.act_step.detach().clone() if q.act_step is not None else None)
        self.kernel = kernel if step.shape[1] == 1 else "nbits"  # block-wise steps: only MatMulNBits has them

    def weight(self) -> torch.Tensor:
        return unpack_int4(self.w_uint4x2, self.in_features).to(torch.float32) * per_input(self.scale, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if integer_on() and self.kernel == "int8":
            return IntLinear.apply(x, Int4Codes.apply(self.w_uint4x2, self.in_features), self.scale, self.bias, self.act_step)
        if integer_on() and self.block is not None:
            return Int4Linear.apply(x, self.w_uint4x2, self.scale, self.bias, self.act_step, self.block, self.in_features)
        if self.act_step is not None:
            x = torch.clamp(torch.round(x / self.act_step), -127, 127) * self.act_step
        return F.linear(x, self.weight(), self.bias)


class DeployHalfEmbedding(nn.Module):
    def __init__(self, emb: nn.Embedding):
        super().__init__()
        self.register_buffer("w_fp16", emb.weight.detach().to(torch.float16))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.w_fp16).to(torch.float32)


class DeployHalfLayerNorm(nn.Module):
    def __init__(self, ln: nn.LayerNorm):
        super().__init__()
        self.shape, self.eps = tuple(ln.normalized_shape), ln.eps
        self.register_buffer("w_fp16", ln.weight.detach().to(torch.float16))
        self.register_buffer("b_fp16", ln.bias.detach().to(torch.float16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.shape, self.w_fp16.to(torch.float32), self.b_fp16.to(torch.float32), self.eps)


def int4_rows_as_int8(model: nn.Module, prefix: str = "") -> dict[str, list[str]]:
    """For torch.export (TVM), in place: each INT4 layer with one step a row becomes a DeployLinear holding its
    values in int8, which TVM's integer dense kernels take like any INT8 layer; block-wise ones stay packed (float
    there). Returns the names of both kinds."""
    out: dict[str, list[str]] = {"as_int8": [], "float": []}
    for name, child in list(model.named_children()):
        full = f"{prefix}{name}"
        if isinstance(child, DeployLinear4) and child.scale.shape[1] == 1:
            codes = Int4Codes.apply(child.w_uint4x2, child.in_features)
            setattr(model, name, DeployLinear.of(codes, child.scale, child.bias, child.act_step))
            out["as_int8"].append(full)
        elif isinstance(child, DeployLinear4):
            out["float"].append(full)
        else:
            sub = int4_rows_as_int8(child, f"{full}.")
            out["as_int8"] += sub["as_int8"]
            out["float"] += sub["float"]
    return out


def to_deploy(qmodel: nn.Module, half_float: bool = False, int4_kernel: str = "int8") -> nn.Module:
    """A copy of `qmodel` with packed low-bit weight buffers (and, with `half_float`, FP16 float
    embeddings and LayerNorms); its outputs equal the fake-quantized model's up to FP16 rounding.
    `int4_kernel`: how INT4 layers with one step per row run under onnxruntime (DeployLinear4)."""
    model = copy.deepcopy(qmodel)

    def swap(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, QuantLinear):
                setattr(parent, name, DeployLinear4(child, int4_kernel) if child.qp == 7 else DeployLinear(child))
            elif isinstance(child, QuantEmbedding):
                setattr(parent, name, DeployEmbedding(child))
            elif half_float and isinstance(child, nn.Embedding):
                setattr(parent, name, DeployHalfEmbedding(child))
            elif half_float and isinstance(child, nn.LayerNorm):
                setattr(parent, name, DeployHalfLayerNorm(child))
            else:
                swap(child)

    swap(model)
    return model.eval()
