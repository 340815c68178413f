"""What the device side needs from a model, prepared on the host: a fixed-shape exported program (for
TVM), an ONNX file (for onnxruntime), the dev set as padded token ids, and reference logits.

    from eibert.deploy import export_program, onnx_model, prepare_inputs, reference_logits
    export_program(artifact_dir, seq_len=64, out="model-s64.pt2")      # torch.export, batch 1
    prepare_inputs(artifact_dir, dev_rows, seq_len=64, out="inputs.npz")
    reference_logits(onnx_model(artifact_dir, cache), "inputs.npz")   # (N, C) float32

Works for a compressed artifact and for any Hugging Face classifier folder (the teacher).
"""

from pathlib import Path

import numpy as np
import torch

from eibert.export import OPSET, is_artifact, load_deploy_model
from eibutil.cache import Cache
from eibutil.files import KEY_CHARS


class _HFLogits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def deployable(model_dir: str | Path) -> torch.nn.Module:
    """(input_ids, attention_mask) int64 (B, T) -> logits (B, C), in eval mode."""
    if is_artifact(model_dir):
        return load_deploy_model(model_dir)
    from eibert.hub import load_classifier

    return _HFLogits(load_classifier(str(model_dir))).eval()


def export_program(model_dir: str | Path, seq_len: int, out: str | Path) -> Path:
    """torch.export of the deployable model at batch 1 and a fixed sequence length, saved as .pt2; beside it
    (.json) the INT4 layers and how they were handed over (eibert.deploy_layers.int4_rows_as_int8)."""
    from eibert.deploy_layers import int4_rows_as_int8
    from eibutil import atomic_write_json

    model = deployable(model_dir)
    int4 = int4_rows_as_int8(model)
    atomic_write_json(Path(out).with_suffix(".json"), {"int4_layers": sorted(int4["as_int8"] + int4["float"]),
                                                        "int4_as_int8": int4["as_int8"], "int4_float": int4["float"]})
    ids = torch.zeros((1, seq_len), dtype=torch.long)
    with torch.no_grad():
        ep = torch.export.export(model, (ids, torch.ones_like(ids)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.pt2")
    torch.export.save(ep, str(tmp))
    tmp.replace(out)
    return out


def onnx_model(model_dir: str | Path, cache_dir: str | Path) -> Path:
    """The artifact's own model.onnx, or an fp32 export of a Hugging Face classifier (cached)."""
    if is_artifact(model_dir):
        return Path(model_dir) / "model.onnx"
    from eibert.hub import model_fingerprint

    out = Cache(cache_dir).area("onnx") / model_fingerprint(str(model_dir))[:KEY_CHARS] / "model.onnx"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    model = deployable(model_dir)
    ids = torch.ones((1, 16), dtype=torch.long)
    tmp = out.with_name(".model.onnx.tmp")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, torch.ones_like(ids)), str(tmp), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "logits": {0: "batch"}})
    tmp.replace(out)
    return out


def prepare_inputs(model_dir: str | Path, ds, seq_len: int, out: str | Path, limit: int | None = None) -> dict:
    """Tokenize a normalised dataset split with the model's own tokenizer, padded to `seq_len` (TVM's
    shapes are static); writes input_ids, attention_mask (N, seq_len) int64 and labels (N,)."""
    from eibert.hub import load_tokenizer
    from eibert.textcls import encode

    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    tok = load_tokenizer(str(model_dir))
    rows = encode(tok, ds, seq_len)
    pad = tok.pad_token_id or 0
    ids = np.full((len(rows), seq_len), pad, dtype=np.int64)
    mask = np.zeros((len(rows), seq_len), dtype=np.int64)
    for i, (r, _) in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    labels = np.array([y for _, y in rows], dtype=np.int64)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.npz")
    np.savez(tmp, input_ids=ids, attention_mask=mask, labels=labels)
    tmp.replace(out)
    return {"path": str(out), "rows": len(rows), "seq_len": seq_len, "truncated": int(sum(len(r) >= seq_len for r, _ in rows))}


def reference_logits(onnx_path: str | Path, inputs_npz: str | Path, batch_size: int = 1) -> np.ndarray:
    """onnxruntime logits on exactly the arrays the device gets, one row per call as the device runs them
    (the integer layers quantize activations per call)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    data = np.load(inputs_npz)
    ids, mask = data["input_ids"], data["attention_mask"]
    outs = [sess.run(["logits"], {"input_ids": ids[i : i + batch_size], "attention_mask": mask[i : i + batch_size]})[0]
            for i in range(0, len(ids), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
