"""Does onnxruntime run an artifact's weights as integers? Loads the session, reads back its
optimised graph, and names every weight matrix that is float there or reaches a float MatMul
through a dequantization (bytes kept, speed not).

    problems = float_weight_paths("artifact/model.onnx")   # [] when every weight matrix is consumed by an integer op
"""

import tempfile
from pathlib import Path

INTEGER_OPS = {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul", "QGemm", "Gather",
               "MatMulNBits"}
FLOAT_MATMUL = {"MatMul", "FusedMatMul", "Gemm"}
PASS_THROUGH = {"DequantizeLinear", "Cast", "Mul", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "Identity"}
FLOAT, INT8, UINT8 = 1, 3, 2


def optimised_graph(onnx_path: str | Path):
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        return onnx.load(so.optimized_model_filepath).graph


def _matrix(dims) -> bool:
    """A weight matrix: two or more axes longer than one (INT4 weights are packed (N, K/block, block/2))."""
    return sum(d > 1 for d in dims) >= 2


def float_weight_paths(onnx_path: str | Path) -> list[str]:
    g = optimised_graph(onnx_path)
    problems = [f"float weight matrix {i.name} {list(i.dims)}" for i in g.initializer
                if i.data_type == FLOAT and _matrix(i.dims)]
    weights = {i.name for i in g.initializer if _matrix(i.dims)}
    derived = set(weights)
    for node in g.node:  # topological order: what a weight matrix becomes through casts, scales and reshapes
        if node.op_type in PASS_THROUGH and any(x in derived for x in node.input):
            derived.update(node.output)
    for node in g.node:
        hits = [x for x in node.input if x in derived]
        if node.op_type in FLOAT_MATMUL and hits:
            problems.append(f"{node.op_type} {node.name} takes {hits[0]} (a weight matrix) in float")
        elif hits and node.op_type not in INTEGER_OPS | PASS_THROUGH:
            problems.append(f"{node.op_type} {node.name} consumes weight matrix {hits[0]}")
    return problems
