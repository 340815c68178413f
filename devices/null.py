"""The null model: an ONNX graph that takes the artifact's inputs and returns constant logits, so the
runner, its timer and the transport are all that is timed (LoadGen's null system-under-test). Its p50
on a device is the floor under every latency measured there.

    onnx_path, npz = null_files(cache_dir, seq_len=64)
    res = agent.run_model({"model.onnx": onnx_path, "inputs.npz": npz}, "onnxruntime", model="model.onnx", ...)
"""

from pathlib import Path

import numpy as np

from eibutil.cache import Cache

NULL_ROWS = 4


def write_null_onnx(path: Path, seq_len: int) -> Path:
    import onnx
    from onnx import TensorProto, helper

    const = helper.make_tensor("const_logits", TensorProto.FLOAT, [1, 2], [0.0, 0.0])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["logits"], value=const)], "null",
        [helper.make_tensor_value_info(n, TensorProto.INT64, [1, seq_len]) for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="eibert-null")
    model.ir_version = 8  # readable by every onnxruntime a device may carry
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(path)
    return path


def null_files(cache_dir: str | Path, seq_len: int) -> tuple[Path, Path]:
    """(null.onnx, inputs.npz) for this length, written once under `cache_dir/null/`."""
    d = Cache(cache_dir).area("null") / f"s{seq_len}"
    onnx_path, npz = d / "null.onnx", d / "inputs.npz"
    if not onnx_path.exists():
        write_null_onnx(onnx_path, seq_len)
    if not npz.exists():
        z = np.zeros((NULL_ROWS, seq_len), np.int64)
        tmp = d / ".inputs.tmp.npz"
        np.savez(tmp, input_ids=z, attention_mask=z, labels=np.zeros(NULL_ROWS, np.int64))
        tmp.replace(npz)
    return onnx_path, npz
