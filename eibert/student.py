"""The student: a small BERT (optionally a factorised embedding E < H, optionally ALBERT-style shared
layers), with the teacher's task layers optionally integrated on top of it.

    from eibert.student import StudentSpec, Student, init_from_teacher
    spec = StudentSpec(vocab_size=8000, embedding_size=128, hidden=256, layers=2, heads=8, ffn=1024,
                       num_labels=2, teacher_hidden=384, integrate=True)
    student = Student(spec)
    init_from_teacher(student, teacher, old_ids, hidden_rows)   # slices the teacher's weights
    out = student(input_ids, attention_mask)     # {"logits": (B, C), "hidden": [(B, T, H)...], "attn": [...]}

Plain torch with no data-dependent control flow, so `torch.export` and the ONNX exporter see one graph.
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class StudentSpec:
    vocab_size: int
    hidden: int = 256
    layers: int = 2
    heads: int = 8
    ffn: int = 512
    embedding_size: int | None = 128  # None: same as hidden (no factorisation)
    num_labels: int = 2
    max_positions: int = 128
    type_vocab: int = 2
    share_layers: bool = False  # ALBERT-style: one set of layer weights used `layers` times
    integrate: bool = False  # parameter integration: bridge to the teacher's pooler + classifier
    folded: bool = False  # integrated head with the bridge folded into the pooler (one matrix; see fold_head)
    teacher_hidden: int | None = None
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1

    @property
    def emb(self) -> int:
        return self.embedding_size or self.hidden

    def to_json(self) -> dict:
        return asdict(self)


class Embeddings(nn.Module):
    def __init__(self, s: StudentSpec):
        super().__init__()
        self.word = nn.Embedding(s.vocab_size, s.emb)
        self.position = nn.Embedding(s.max_positions, s.emb)
        self.token_type = nn.Embedding(s.type_vocab, s.emb)
        self.norm = nn.LayerNorm(s.emb, eps=s.layer_norm_eps)
        self.proj = nn.Linear(s.emb, s.hidden) if s.emb != s.hidden else None
        self.drop = nn.Dropout(s.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        pos = torch.arange(T, device=input_ids.device).unsqueeze(0)  # (1, T)
        x = self.word(input_ids) + self.position(pos)  # (B, T, E)
        x = x + self.token_type(token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids))
        x = self.drop(self.norm(x))
        return self.proj(x) if self.proj is not None else x  # (B, T, H)


class Layer(nn.Module):
    """Post-LN BERT layer, named like the teacher's parts for readability."""

    def __init__(self, s: StudentSpec):
        super().__init__()
        self.heads, self.head_dim = s.heads, s.hidden // s.heads
        self.query, self.key, self.value = (nn.Linear(s.hidden, s.hidden) for _ in range(3))
        self.attn_out = nn.Linear(s.hidden, s.hidden)
        self.attn_norm = nn.LayerNorm(s.hidden, eps=s.layer_norm_eps)
        self.ffn_in = nn.Linear(s.hidden, s.ffn)
        self.ffn_out = nn.Linear(s.ffn, s.hidden)
        self.ffn_norm = nn.LayerNorm(s.hidden, eps=s.layer_norm_eps)
        self.drop = nn.Dropout(s.dropout)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, H = x.shape
        split = lambda t: t.view(B, T, self.heads, self.head_dim).transpose(1, 2)  # noqa: E731  (B, nh, T, hd)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + mask_bias  # (B, nh, T, T)
        probs = scores.softmax(-1)
        ctx = (self.drop(probs) @ v).transpose(1, 2).reshape(B, T, H)
        x = self.attn_norm(x + self.drop(self.attn_out(ctx)))
        x = self.ffn_norm(x + self.drop(self.ffn_out(F.gelu(self.ffn_in(x)))))
        return x, probs


class Student(nn.Module):
    def __init__(self, spec: StudentSpec):
        super().__init__()
        if spec.hidden % spec.heads:
            raise ValueError(f"hidden ({spec.hidden}) must be divisible by heads ({spec.heads})")
        if spec.integrate and not spec.teacher_hidden:
            raise ValueError("parameter integration needs teacher_hidden")
        self.spec = spec
        self.embeddings = Embeddings(spec)
        n_distinct = 1 if spec.share_layers else spec.layers
        self.layers = nn.ModuleList(Layer(spec) for _ in range(n_distinct))
        head = spec.teacher_hidden if spec.integrate else spec.hidden
        unfolded = spec.integrate and not spec.folded
        self.bridge = nn.Linear(spec.hidden, head) if unfolded else None  # student -> teacher space
        self.pooler = nn.Linear(spec.hidden if spec.folded else head, head)
        self.classifier = nn.Linear(head, spec.num_labels)
        self.drop = nn.Dropout(spec.dropout)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def layer(self, i: int) -> Layer:
        return self.layers[0 if self.spec.share_layers else i]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> dict:
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min  # (B, 1, 1, T)
        x = self.embeddings(input_ids, token_type_ids)
        hidden, attn = [x], []
        for i in range(self.spec.layers):
            x, probs = self.layer(i)(x, mask_bias)
            hidden.append(x)
            attn.append(probs)
        cls = x[:, 0]  # (B, H)
        if self.bridge is not None:
            cls = self.bridge(cls)  # (B, H_teacher)
        logits = self.classifier(self.drop(torch.tanh(self.pooler(cls))))
        return {"logits": logits, "hidden": hidden, "attn": attn}


@torch.no_grad()
def fold_head(student: Student) -> Student:
    """The same function with the bridge folded into the pooler: pooler(bridge(x)) = (Wp Wb) x + (Wp bb + bp).
    Linear on linear is one linear, so the integrated head costs H x H_t weights instead of H x H_t + H_t x H_t."""
    if student.bridge is None:
        return student
    import copy

    return fold_into(copy.deepcopy(student))


def fold_into(student: Student) -> Student:
    """`fold_head` in place (QAT folds the student it trains): the pooler becomes the product, the bridge goes."""
    if student.bridge is None:
        return student
    from dataclasses import replace

    wp, bp = student.pooler.weight.detach().double(), student.pooler.bias.detach().double()
    wb, bb = student.bridge.weight.detach().double(), student.bridge.bias.detach().double()
    pooler = nn.Linear(wb.shape[1], wp.shape[0])
    with torch.no_grad():
        pooler.weight.copy_((wp @ wb).float())
        pooler.bias.copy_((wp @ bb + bp).float())
    student.pooler, student.bridge = pooler, None
    student.spec = replace(student.spec, folded=True)
    return student


class LogitsOnly(nn.Module):
    """(input_ids, attention_mask) -> logits: the graph that is exported and deployed."""

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.student(input_ids, attention_mask)["logits"]


def parameter_bytes(student: Student, bits: int = 32) -> dict[str, int]:
    """Bytes per part at `bits` per weight (biases and norms counted at 32 bits)."""
    parts = {"embeddings": student.embeddings, "encoder": student.layers,
             "head": nn.ModuleList(m for m in (student.bridge, student.pooler, student.classifier) if m is not None)}
    out = {}
    for name, mod in parts.items():
        total = 0
        for pname, p in mod.named_parameters():
            is_weight = pname.endswith("weight") and p.dim() >= 2
            total += p.numel() * (bits if is_weight else 32) // 8
        out[name] = total
    return out


# ---- initialisation from the teacher (a transformers BertForSequenceClassification) ----------------


@torch.no_grad()
def pick_hidden_dims(teacher, rows: list, hidden: int, pad_id: int = 0, max_rows: int = 256) -> torch.Tensor:
    """The `hidden` teacher dimensions with the largest activation energy over the last hidden
    states of `rows` (sorted ascending, so slicing keeps their order)."""
    from eibert.textcls import collate

    T = teacher.config.hidden_size
    if hidden >= T:
        return torch.arange(T)
    energy = torch.zeros(T, dtype=torch.float64)
    for i in range(0, min(len(rows), max_rows), 64):
        b = collate(rows[i : min(i + 64, max_rows)], pad_id)
        hs = teacher.bert(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True).hidden_states
        m = b["attention_mask"][..., None].double()
        for h in hs:
            energy += ((h.double() ** 2) * m).sum(dim=(0, 1))
    return torch.sort(torch.topk(energy, hidden).indices).values


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer each student layer is initialised from and distilled against (uniform, last kept)."""
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def _copy(dst: nn.Linear, src: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> None:
    w = src.weight
    w = w[rows] if rows is not None else w
    w = w[:, cols] if cols is not None else w
    if w.shape == dst.weight.shape:
        dst.weight.copy_(w)
        dst.bias.copy_(src.bias[rows] if rows is not None else src.bias)


@torch.no_grad()
def init_from_teacher(student: Student, teacher, old_ids: list[int], dims: torch.Tensor) -> dict:
    """Slice the teacher's weights into the student: vocabulary rows `old_ids`, hidden dims `dims`,
    layers by `layer_map`, attention heads and FFN neurons by weight magnitude; the task layers
    (pooler, classifier) are copied whole when integrated. Returns what was initialised how."""
    s, tb = student.spec, teacher.bert
    report = {"layers": layer_map(teacher.config.num_hidden_layers, s.layers), "hidden_dims": len(dims)}
    te = tb.embeddings
    ids = torch.as_tensor(old_ids)
    word = te.word_embeddings.weight[ids]  # (V_s, H_t)
    pos = te.position_embeddings.weight[: s.max_positions]
    if s.emb == s.hidden:
        student.embeddings.word.weight.copy_(word[:, dims])
        student.embeddings.position.weight.copy_(pos[:, dims])
        student.embeddings.token_type.weight.copy_(te.token_type_embeddings.weight[: s.type_vocab][:, dims])
        student.embeddings.norm.weight.copy_(te.LayerNorm.weight[dims])
        student.embeddings.norm.bias.copy_(te.LayerNorm.bias[dims])
        report["embeddings"] = "sliced"
    else:  # factorised: E-dim PCA of the kept rows; the projection maps back onto the chosen dims
        mean = word.mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(word - mean, full_matrices=False)
        basis = v[: s.emb]  # (E, H_t)
        student.embeddings.word.weight.copy_((word - mean) @ basis.T)
        student.embeddings.position.weight.copy_(pos @ basis.T)
        student.embeddings.token_type.weight.copy_(te.token_type_embeddings.weight[: s.type_vocab] @ basis.T)
        student.embeddings.proj.weight.copy_(basis.T[dims])  # (H_s, E)
        student.embeddings.proj.bias.copy_(mean[0, dims])
        report["embeddings"] = f"pca-{s.emb}"
    n_layers = 1 if s.share_layers else s.layers
    for i in range(n_layers):
        t = tb.encoder.layer[report["layers"][i]]
        st = student.layers[i]
        att = t.attention.self
        t_hd = att.attention_head_size
        if s.hidden // s.heads == t_hd:  # whole heads, chosen by the norm of their output projection
            norms = t.attention.output.dense.weight.view(-1, att.num_attention_heads, t_hd).norm(dim=(0, 2))
            keep = torch.sort(torch.topk(norms, s.heads).indices).values
            rows = (keep[:, None] * t_hd + torch.arange(t_hd)).flatten()
        else:
            rows = dims
        _copy(st.query, att.query, rows, dims)
        _copy(st.key, att.key, rows, dims)
        _copy(st.value, att.value, rows, dims)
        _copy(st.attn_out, t.attention.output.dense, dims, rows)
        st.attn_norm.weight.copy_(t.attention.output.LayerNorm.weight[dims])
        st.attn_norm.bias.copy_(t.attention.output.LayerNorm.bias[dims])
        w_in, w_out = t.intermediate.dense.weight, t.output.dense.weight
        neurons = torch.sort(torch.topk(w_in.norm(dim=1) * w_out.norm(dim=0), min(s.ffn, w_in.shape[0])).indices).values
        if len(neurons) == s.ffn:
            _copy(st.ffn_in, t.intermediate.dense, neurons, dims)
            _copy(st.ffn_out, t.output.dense, dims, neurons)
        st.ffn_norm.weight.copy_(t.output.LayerNorm.weight[dims])
        st.ffn_norm.bias.copy_(t.output.LayerNorm.bias[dims])
    if s.integrate:
        student.pooler.load_state_dict(tb.pooler.dense.state_dict())
        student.classifier.load_state_dict(teacher.classifier.state_dict())
        eye = torch.zeros(s.teacher_hidden, s.hidden)
        eye[dims, torch.arange(len(dims))] = 1.0  # the bridge starts as the inverse of the dim selection
        student.bridge.weight.copy_(eye)
        student.bridge.bias.zero_()
        report["head"] = "teacher task layers integrated"
    else:
        _copy(student.pooler, tb.pooler.dense, dims, dims)
        _copy(student.classifier, teacher.classifier, None, dims)
        report["head"] = "sliced"
    return report
