"""The stage graph of a sweep: one node per distinct piece of work, shared by every variant that needs it.

    nodes = build_graph(variants, inventory)
    [n.stage for n in nodes]   # teacher, importance, vocab, student x distinct, artifact x variants, build, measure

A node's key hashes exactly the settings its output depends on, so two variants that differ only in
quantization share the teacher, the importance scores and the trained student (a graph, not N copies),
and the same key in a later run means the same work (resume, caching). Nodes are listed in dependency
order.
"""

import hashlib
from dataclasses import dataclass, field

from eibutil.files import canonical_json
from harness.identity import content_view
from harness.variants import Variant

# Config sections each stage's output depends on (everything else is excluded from its key).
_TEACHER = ("task", "teacher")
_IMPORTANCE = _TEACHER + ("compress.vocab.method", "compress.vocab.importance_rows")
_VOCAB = _IMPORTANCE + ("compress.vocab.size",)
_STUDENT = _TEACHER + ("compress.student", "compress.vocab", "compress.distill")
_ARTIFACT = _STUDENT + ("compress.quant",)


@dataclass
class Node:
    key: str
    stage: str  # a name in harness.stages.registry.REGISTRY
    variant_ids: list[str]
    deps: list[str]
    payload: dict = field(default_factory=dict)  # what the stage function needs besides its deps' outputs
    dep_stages: list[str] = field(default_factory=list)  # the stage of each dependency, in `deps` order

    @property
    def variant_id(self) -> str:
        """The variant a result row belongs to; "" for work shared by several variants."""
        return self.variant_ids[0] if len(self.variant_ids) == 1 else ""

    @property
    def label(self) -> str:
        extra = self.payload.get("device") or self.payload.get("target") or ""
        return f"{self.stage}{'@' + extra if extra else ''}{'/' + self.payload['runtime'] if 'runtime' in self.payload else ''}"


def _pick(cfg_json: dict, paths: tuple[str, ...]) -> dict:
    out = {}
    for p in paths:
        node = cfg_json
        for part in p.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[p] = node
    return out


def _key(stage: str, data: dict) -> str:
    return hashlib.sha256(canonical_json({"stage": stage, **data}).encode()).hexdigest()[:20]


def build_graph(variants: list[Variant], inventory) -> list[Node]:
    """Nodes in dependency order; `inventory` maps device names to `DeviceSpec`s."""
    nodes: dict[str, Node] = {}

    def add(stage: str, data: dict, variant: Variant, deps: list[str], payload: dict) -> str:
        """`deps` are (stage, key) pairs."""
        key = _key(stage, data)
        if key in nodes:
            if variant.variant_id not in nodes[key].variant_ids:
                nodes[key].variant_ids.append(variant.variant_id)
        else:
            nodes[key] = Node(key, stage, [variant.variant_id], [k for _, k in deps], {"config": variant.config, **payload},
                              [s for s, _ in deps])
        return key

    for v in variants:
        cj = content_view(v.config)  # paths as the content they name: the same keys from any checkout
        t = add("teacher", _pick(cj, _TEACHER), v, [], {})
        i = add("importance", _pick(cj, _IMPORTANCE), v, [("teacher", t)], {})
        vo = add("vocab", _pick(cj, _VOCAB), v, [("teacher", t), ("importance", i)], {})
        s = add("student", _pick(cj, _STUDENT), v, [("teacher", t), ("vocab", vo)], {})
        a = add("artifact", _pick(cj, _ARTIFACT), v, [("teacher", t), ("student", s)], {})
        m = cj["measure"]
        builds: dict[str, str] = {}
        if "tvm" in m["runtimes"]:
            targets = list(dict.fromkeys([*cj["targets"], *(inventory[d].target for d in cj["devices"])]))
            for target in targets:
                # a build for devices that all sit behind one Ray node is made there (where it is uploaded from)
                pins = {inventory[d].ray_resource for d in cj["devices"] if inventory[d].target == target
                        and "tvm" in inventory[d].runtimes}
                pin = pins.pop() if len(pins) == 1 else None
                builds[target] = add("build", {"artifact": a, "target": target, "seq_len": m["seq_len"]}, v, [("artifact", a)],
                                     {"target": target, **({"pin": pin} if pin else {})})
        for d in cj["devices"]:
            spec = inventory[d]
            if m["teacher"] and "onnxruntime" in spec.runtimes:  # the reference on the same device (fp32, onnxruntime)
                add("measure", {"teacher": t, "device": d, "runtime": "onnxruntime", "measure": m}, v, [("teacher", t)],
                    {"device": d, "runtime": "onnxruntime", "target": None, "subject": "teacher"})
            for runtime in m["runtimes"]:
                if runtime not in spec.runtimes:
                    continue
                deps = [("artifact", a)] + ([("build", builds[spec.target])] if runtime == "tvm" else [])
                add("measure", {"artifact": a, "device": d, "runtime": runtime, "measure": m}, v, deps,
                    {"device": d, "runtime": runtime, "target": spec.target if runtime == "tvm" else None})
    return list(nodes.values())
