"""Weight quantization with learnable step sizes (LSQ), optimised module by module.

    from eibert.quant import QuantSettings, quantize, calibrate_modular
    qmodel = quantize(copy.deepcopy(student), QuantSettings(granularity="per-channel", method="lsq"))
    calibrate_modular(student, qmodel, calib_batches, settings)      # learns step sizes block by block
    # the deployable form (int8 buffers + fp32 scales, the graph that is exported): eibert.deploy_layers.to_deploy

Granularity is how many step sizes a weight gets: one per tensor, one per output channel (row), or
one shared by every weight matrix of a module (per-module, the coarsest). Method is how they are
found: `minmax` takes absmax/Qp; `lsq` starts there and trains the step sizes with a straight-through
estimator (Esser et al., LSQ) so that each module (the embeddings, every encoder layer, the head)
reproduces its float output on calibration data. Module-wise reconstruction keeps errors from
accumulating across layers, and each step is cheap. Symmetric, zero point 0, range [-Qp, Qp].
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from eibert.intlinear import nbits_block


@dataclass(frozen=True)
class QuantSettings:
    granularity: str = "per-channel"  # per-tensor | per-channel | per-module
    method: str = "lsq"  # lsq | minmax
    bits: int = 8  # 4: every linear layer INT4 (embeddings stay INT8), run by MatMulNBits
    activations: bool = False  # fake-quantize the input of every linear layer (int8, per tensor, LSQ)
    mixed: bool = False  # INT4 feed-forward weights, FP16 embeddings and LayerNorm, INT8 elsewhere
    block: int | None = None  # INT4: one step per block of this many inputs of each output (32, 64, 128); None: per channel
    steps_per_block: int = 200
    lr: float = 1e-2  # relative to each step size
    batch_size: int = 32

    def to_json(self) -> dict:
        return asdict(self)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return (x.round() - x).detach() + x


def grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    return (x - x * g).detach() + x * g


def per_input(step: torch.Tensor, k: int) -> torch.Tensor:
    """A step of shape (out, k / block) (block-wise) repeated to one per weight: (out, k); others as they are."""
    return step if step.shape[1] == 1 else step.repeat_interleave(k // step.shape[1], dim=1)


def fake_quant(w: torch.Tensor, step: torch.Tensor, qp: int) -> torch.Tensor:
    """LSQ fake quantization: round(clamp(w / s, -Qp, Qp)) * s with straight-through gradients."""
    s = per_input(grad_scale(step, 1.0 / math.sqrt(w.numel() * qp)), w.shape[-1])
    return round_ste(torch.clamp(w / s, -qp, qp)) * s


def _init_step(w: torch.Tensor, per_channel: bool, qp: int, block: int | None = None) -> torch.Tensor:
    w = w.detach().abs()
    if block:
        amax = w.reshape(w.shape[0], -1, block).amax(dim=2)
    else:
        amax = w.amax(dim=1, keepdim=True) if per_channel else w.max().reshape(1, 1)
    return (amax / qp).clamp_min(1e-8)


class QuantLinear(nn.Module):
    def __init__(self, lin: nn.Linear, step: nn.Parameter, qp: int, act: bool, trainable: bool = False):
        super().__init__()
        self.weight = nn.Parameter(lin.weight.detach().clone(), requires_grad=trainable)
        self.bias = nn.Parameter(lin.bias.detach().clone(), requires_grad=trainable) if lin.bias is not None else None
        self.step, self.qp = step, qp  # step: (out, 1) or (1, 1), possibly shared with siblings
        self.act_step = nn.Parameter(torch.tensor(0.05)) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_step is not None:
            x = fake_quant(x, self.act_step, 127)
        return F.linear(x, fake_quant(self.weight, self.step, self.qp), self.bias)


class QuantEmbedding(nn.Module):
    def __init__(self, emb: nn.Embedding, step: nn.Parameter, qp: int, trainable: bool = False):
        super().__init__()
        self.weight = nn.Parameter(emb.weight.detach().clone(), requires_grad=trainable)
        self.step, self.qp = step, qp

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, fake_quant(self.weight, self.step, self.qp))


def _modules(student) -> list[nn.Module]:
    """The units of modular quantization, in forward order: embeddings, each distinct layer, the head."""
    head = nn.ModuleDict({k: m for k in ("bridge", "pooler", "classifier") if (m := getattr(student, k)) is not None})
    return [student.embeddings, *student.layers, head]


def _targets(module: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, leaf) for every Linear and Embedding under `module`."""
    return [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
            if isinstance(child, (nn.Linear, nn.Embedding))]


def _qp(name: str, s: QuantSettings, linear: bool = True) -> int:
    if s.mixed and name in ("ffn_in", "ffn_out"):
        return 7  # INT4 feed-forward weights
    if s.bits == 4 and linear:
        return 7  # the embedding table stays INT8
    return 127


def _quantize_module(module: nn.Module, s: QuantSettings, trainable: bool) -> None:
    targets = _targets(module)
    if s.mixed:  # embeddings stay float here and are deployed as FP16
        targets = [t for t in targets if not isinstance(t[2], nn.Embedding)]
    shared = None
    if s.granularity == "per-module" and targets:  # one step for every matrix of this module
        shared = nn.Parameter(max(c.weight.detach().abs().max() for _, _, c in targets).reshape(1, 1) / _qp("", s))
    for parent, name, child in targets:
        linear = isinstance(child, nn.Linear)
        qp = _qp(name, s, linear)
        if qp == 7 and nbits_block(child.weight.shape[1]) is None:
            qp = 127  # no MatMulNBits block fits its input width (< 16, or not a multiple of 16): it stays INT8
        block = s.block if qp == 7 and s.block and child.weight.shape[1] % s.block == 0 else None
        step = shared if shared is not None else nn.Parameter(_init_step(child.weight, s.granularity == "per-channel", qp,
                                                                         block))
        setattr(parent, name, QuantLinear(child, step, qp, s.activations, trainable) if isinstance(child, nn.Linear)
                else QuantEmbedding(child, step, qp, trainable))


def quantize(student: nn.Module, s: QuantSettings, trainable: bool = False) -> nn.Module:
    """Swap every Linear and Embedding of `student` (in place) for its fake-quantized twin; with `trainable` its
    weights keep learning (quantization-aware training, eibert.qat), else only the step sizes do."""
    if s.granularity not in ("per-tensor", "per-channel", "per-module"):
        raise ValueError(f"unknown granularity {s.granularity!r}; allowed: per-tensor, per-channel, per-module")
    if s.bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {s.bits}")
    if (s.mixed or s.bits == 4) and s.granularity == "per-module":
        raise ValueError("INT4 needs per-tensor or per-channel step sizes (INT4 and INT8 cannot share one)")
    if s.block is not None and (s.block not in (16, 32, 64, 128, 256) or not (s.mixed or s.bits == 4)):
        raise ValueError(f"block {s.block}: INT4 steps per block of 16, 32, 64, 128 or 256 inputs (bits: 4 or mixed)")
    *body, head = _modules(student)
    for module in body:
        _quantize_module(module, s, trainable)
    _quantize_module(head, s, trainable)  # the head's ModuleDict is a view: put its swapped children back
    for name, m in head.items():
        setattr(student, name, m)
    return student


def step_sizes(qmodel: nn.Module) -> list[nn.Parameter]:
    seen, out = set(), []
    for m in qmodel.modules():
        for p in (getattr(m, "step", None), getattr(m, "act_step", None)):
            if isinstance(p, nn.Parameter) and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def _run_modules(model, input_ids, attention_mask):
    """Each module's input and output for one batch: [(inputs, output)] in `_modules` order."""
    mask_bias = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    x = model.embeddings(input_ids)
    records = [((input_ids,), x)]
    for i in range(model.spec.layers):
        y, _ = model.layer(i)(x, mask_bias)
        records.append(((x, mask_bias), y))
        x = y
    return records, x[:, 0]


def _head(model, cls):
    if model.bridge is not None:
        cls = model.bridge(cls)
    return model.classifier(torch.tanh(model.pooler(cls)))


def calibrate_modular(float_model: nn.Module, qmodel: nn.Module, calib: list[dict], s: QuantSettings,
                      progress: bool = False) -> dict:
    """Learn the step sizes of `qmodel` module by module: each quantized module, fed the *quantized*
    model's input to it, is trained to reproduce the float module's output on the float input.
    `calib`: batches with input_ids and attention_mask. Returns the reconstruction error per module."""
    from tqdm.auto import tqdm

    float_model.eval()
    qmodel.eval()
    errors: dict[str, dict[str, float]] = {}
    if s.method == "minmax" or s.steps_per_block == 0:
        return {"method": s.method, "modules": errors}
    n_modules = 1 + len(qmodel.layers) + 1
    bar = tqdm(total=n_modules * s.steps_per_block, desc="lsq", disable=not progress, unit="step", mininterval=1.0)
    for k in range(n_modules):
        with torch.no_grad():  # targets: float model; inputs: quantized model up to module k
            targets, q_inputs = [], []
            for b in calib:
                f_rec, f_cls = _run_modules(float_model, b["input_ids"], b["attention_mask"])
                q_rec, q_cls = _run_modules(qmodel, b["input_ids"], b["attention_mask"])
                if k < n_modules - 1 and k < len(f_rec):
                    targets.append(f_rec[k][1])
                    q_inputs.append(q_rec[k][0])
                else:
                    targets.append(_head(float_model, f_cls))
                    q_inputs.append((q_cls,))
        module = _modules(qmodel)[k]
        params = [p for p in step_sizes(module)]
        if not params:
            continue
        # Adam's update is ~lr in absolute terms; step sizes are ~1e-4..1e-2, so each one's learning
        # rate is taken relative to its own magnitude.
        opt = torch.optim.Adam([{"params": [p], "lr": s.lr * float(p.detach().abs().mean())} for p in params])
        start = [p.detach().clone() for p in params]

        def forward(inp, k=k, module=module):
            if k == 0:
                return module(inp[0])
            if k < n_modules - 1:
                return module(*inp)[0]
            return _head(qmodel, inp[0])

        with torch.no_grad():
            before = sum(F.mse_loss(forward(i), t).item() for i, t in zip(q_inputs, targets)) / len(targets)
        for step in range(s.steps_per_block):
            j = step % len(targets)
            loss = F.mse_loss(forward(q_inputs[j]), targets[j])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p in params:
                    p.clamp_(min=1e-8)
            bar.update(1)
        with torch.no_grad():
            after = sum(F.mse_loss(forward(i), t).item() for i, t in zip(q_inputs, targets)) / len(targets)
            if after > before:  # never leave a module worse than its min-max start
                for p, p0 in zip(params, start):
                    p.copy_(p0)
                after = before
        name = "embeddings" if k == 0 else ("head" if k == n_modules - 1 else f"layer{k - 1}")
        errors[name] = {"mse_before": before, "mse_after": after}
    bar.close()
    return {"method": s.method, "modules": errors}
