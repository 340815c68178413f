"""INT4 storage: packing is exact, and onnxruntime's MatMulNBits computes with the packed weights what the
dequantized float weights compute."""

import numpy as np
import pytest

from eibert.int4 import dequantize_blocks, matmul_nbits, pack, quantize_blocks, unpack


@pytest.mark.parametrize("block", [32, 64, 128])
def test_packing_then_unpacking_is_exact(block):
    rng = np.random.default_rng(block)
    q = rng.integers(-8, 8, size=(48, 256)).astype(np.int8)
    q[0, :16] = np.arange(-8, 8)  # every value, in order
    packed = pack(q, block)
    assert packed.dtype == np.uint8 and packed.shape == (48, 256 // block, block // 2) and packed.nbytes == q.size // 2
    assert np.array_equal(unpack(packed, 256), q)
    with pytest.raises(ValueError):
        pack(np.full((1, block), 8, np.int8), block)


def test_matmul_nbits_runs_the_packed_weights_in_onnxruntime():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, size=(96, 256)).astype(np.float32)  # outputs x inputs
    q, scales = quantize_blocks(w, 32)
    assert np.abs(dequantize_blocks(q, scales, 32) - w).max() <= scales.max() / 2 + 1e-6
    node, inits = matmul_nbits("x", "y", "layer", q, scales, 32, accuracy_level=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 96])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(1, 64, 256)).astype(np.float32)
    got = sess.run(["y"], {"x": x})[0]
    want = x @ dequantize_blocks(q, scales, 32).T
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()
