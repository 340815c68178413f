"""INT4 weights for onnxruntime's MatMulNBits: block-wise quantization, packing two per byte, and the node.

    q, scales = quantize_blocks(w, block=32)        # w (N, K) float -> q (N, K) int8 in [-8, 7], scales (N, K/block)
    packed = pack(q, block=32)                      # (N, K/block, block/2) uint8: what MatMulNBits reads
    assert np.array_equal(unpack(packed, K), q)     # exact
    node, inits = matmul_nbits("x", "y", "layer0.ffn_in", q, scales, block=32)

Layout (com.microsoft.MatMulNBits, bits 4): B is (N, K/block, block/2) bytes, element k of a block in the low
nibble when k is even and the high nibble when odd, stored unsigned with the default zero point 8 (so a signed
value v is stored as v + 8); scales (N * K/block) float. `accuracy_level=4` lets the CPU provider compute with
int8 activations. This module is the storage half of INT4 (issue #20); training with INT4 steps is not here yet.
"""

import numpy as np

BITS = 4
ZERO = 8  # MatMulNBits' zero point when none is given, for 4 bits
QMIN, QMAX = -8, 7


def quantize_blocks(w: np.ndarray, block: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-block steps (max |w| / 7 over each block of `block` inputs of an output row)."""
    n, k = w.shape
    if k % block:
        raise ValueError(f"inputs ({k}) must be a multiple of the block ({block})")
    blocks = w.reshape(n, k // block, block).astype(np.float32)
    scales = np.abs(blocks).max(axis=2) / QMAX
    scales[scales == 0] = 1.0
    q = np.clip(np.round(blocks / scales[..., None]), QMIN, QMAX).astype(np.int8)
    return q.reshape(n, k), scales.astype(np.float32)


def dequantize_blocks(q: np.ndarray, scales: np.ndarray, block: int = 32) -> np.ndarray:
    n, k = q.shape
    return (q.reshape(n, k // block, block).astype(np.float32) * scales[..., None]).reshape(n, k)


def pack(q: np.ndarray, block: int = 32) -> np.ndarray:
    """(N, K) int8 in [-8, 7] -> (N, K/block, block/2) uint8, two values per byte."""
    if q.min(initial=0) < QMIN or q.max(initial=0) > QMAX:
        raise ValueError("INT4 values must lie in [-8, 7]")
    n, k = q.shape
    u = (q.astype(np.int16) + ZERO).astype(np.uint8).reshape(n, k // block, block)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def unpack(packed: np.ndarray, k: int) -> np.ndarray:
    """The inverse of `pack`: (N, K/block, block/2) uint8 -> (N, K) int8."""
    n = packed.shape[0]
    low, high = packed & 0x0F, packed >> 4
    u = np.stack([low, high], axis=-1).reshape(n, -1)[:, :k]
    return (u.astype(np.int16) - ZERO).astype(np.int8)


def matmul_nbits(x: str, y: str, prefix: str, q: np.ndarray, scales: np.ndarray, block: int = 32, accuracy_level: int = 4):
    """A MatMulNBits node computing y = x @ dequant(q).T (q is (N, K): outputs by inputs) and its initializers."""
    from onnx import helper, numpy_helper

    n, k = q.shape
    inits = [numpy_helper.from_array(pack(q, block), prefix + ".w_int4"),
             numpy_helper.from_array(scales.reshape(-1), prefix + ".w_int4_step")]
    node = helper.make_node("MatMulNBits", [x, prefix + ".w_int4", prefix + ".w_int4_step"], [y], name=f"/{prefix}/MatMulNBits",
                            domain="com.microsoft", K=k, N=n, bits=BITS, block_size=block, accuracy_level=accuracy_level)
    return node, inits
