"""Export a deployable artifact and account for its bytes; score it with onnxruntime.

    from eibert.export import export_artifact, evaluate_artifact
    manifest = export_artifact(deploy_model, spec, tokenizer_dir, out_dir, extra={...})
    evaluate_artifact(out_dir, dev_rows)   # {"accuracy", "n", "logits"}

An artifact folder holds:
  model.onnx      the graph: int8 weights run by integer ops (MatMulInteger)         deployed
  vocab.txt       the pruned WordPiece vocabulary                                      deployed
  tokenizer.json, tokenizer_config.json   the same tokenizer for `AutoTokenizer`      host only
  deploy.pt       the deployable torch module's buffers (for torch.export -> TVM)      host only
  manifest.json   bytes per part, files with sha256, config, accuracy                 host only
The reported size is the sum of the deployed files' bytes; `parts` splits exactly that sum into
embeddings, encoder, head, graph (ONNX structure and protobuf framing) and tokenizer.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from eibutil import atomic_write_json, sha256_file

DEPLOYED = ("model.onnx", "vocab.txt")
OPSET = 17


def _part_of(name: str) -> str:
    if ".embeddings." in f".{name}" or name.startswith("student.embeddings"):
        return "embeddings"
    if ".layers." in name:
        return "encoder"
    if any(f".{k}." in f".{name}" for k in ("bridge", "pooler", "classifier")):
        return "head"
    return "graph"


def export_onnx(model: torch.nn.Module, path: Path, vocab_size: int, seq_len: int = 16) -> None:
    """(input_ids, attention_mask) int64 (B, T) -> logits (B, C), dynamic B and T."""
    from eibert.student import LogitsOnly

    wrapped = LogitsOnly(model).eval()
    ids = torch.randint(0, vocab_size, (2, seq_len))
    mask = torch.ones_like(ids)
    import warnings

    from eibert.intlinear import integer_graph

    with warnings.catch_warnings(), integer_graph():  # INT8 linear layers as integer ops
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            wrapped, (ids, mask), str(path), input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "logits": {0: "batch"}},
            opset_version=OPSET, dynamo=False, custom_opsets={"com.microsoft": 1},
            do_constant_folding=False,  # folding would turn the int8 weights and their dequantization back into float32
        )


def byte_parts(onnx_path: Path, vocab_path: Path) -> dict[str, int]:
    """Split the deployed bytes into parts; the parts sum exactly to the deployed files' sizes."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    parts = {"embeddings": 0, "encoder": 0, "head": 0, "graph": 0, "tokenizer": vocab_path.stat().st_size}
    weights = 0
    for init in graph.initializer:
        n = numpy_helper.to_array(init).nbytes
        parts[_part_of(init.name)] += n
        weights += n
    parts["graph"] += onnx_path.stat().st_size - weights
    return parts


def export_artifact(deploy_model: torch.nn.Module, spec: dict, tokenizer_dir: str | Path, out_dir: str | Path,
                    extra: dict | None = None) -> dict:
    """Write the artifact folder (see module doc) and its manifest; returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(deploy_model, out / "model.onnx", spec["vocab_size"])
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        src = Path(tokenizer_dir) / name
        if src.is_file():
            shutil.copyfile(src, out / name)
    torch.save(deploy_model.state_dict(), out / "deploy.pt")
    parts = byte_parts(out / "model.onnx", out / "vocab.txt")
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p), "deployed": p.name in DEPLOYED}
             for p in sorted(out.iterdir()) if p.is_file() and p.name != "manifest.json"}
    manifest = {
        "format": "eibert-artifact/1",
        "size_bytes": sum(f["bytes"] for f in files.values() if f["deployed"]),
        "parts": parts,
        "files": files,
        "spec": spec,
        "inputs": {"input_ids": "int64 (batch, seq)", "attention_mask": "int64 (batch, seq)"},
        "outputs": {"logits": "float32 (batch, num_labels)"},
        "opset": OPSET,
        **(extra or {}),
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def load_manifest(artifact_dir: str | Path) -> dict:
    return json.loads((Path(artifact_dir) / "manifest.json").read_text())


def is_artifact(path: str | Path) -> bool:
    return (Path(path) / "manifest.json").is_file() and (Path(path) / "model.onnx").is_file()


def ort_logits(artifact_dir: str | Path, rows: list, batch_size: int = 1, pad_id: int = 0) -> np.ndarray:
    """Logits (N, C) from onnxruntime on the artifact's model.onnx; rows = [(ids, label)]. One row per call
    by default, as deployed: the integer layers quantize activations per call, so padding rows would
    change the scales."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(Path(artifact_dir) / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    out = None
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        width = max(len(rows[j][0]) for j in idx)
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, j in enumerate(idx):
            ids[r, : len(rows[j][0])] = rows[j][0]
            mask[r, : len(rows[j][0])] = 1
        logits = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        if out is None:
            out = np.zeros((len(rows), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def load_deploy_model(artifact_dir: str | Path) -> torch.nn.Module:
    """Rebuild the deployable torch module of an artifact (for `torch.export` -> TVM): the student's
    structure from the manifest, its int8/int4/fp16 buffers from deploy.pt. Returns a module mapping
    (input_ids, attention_mask) -> logits."""
    from eibert.deploy_layers import to_deploy
    from eibert.quant import QuantSettings, quantize
    from eibert.student import LogitsOnly, Student, StudentSpec

    manifest = load_manifest(artifact_dir)
    model = Student(StudentSpec(**manifest["spec"]))
    q = manifest.get("quant")
    if q:
        settings = QuantSettings(**q)
        model = to_deploy(quantize(model, settings), half_float=settings.mixed)
    state = torch.load(Path(artifact_dir) / "deploy.pt", weights_only=True)
    model.load_state_dict(state)
    return LogitsOnly(model.eval()).eval()

