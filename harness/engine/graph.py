"""The stage graph of a sweep: one node per distinct piece of work, shared by every variant that needs it.

    nodes = build_graph(variants, inventory)
    [n.stage for n in nodes]   # teacher, importance, vocab, student x distinct, artifact x variants, build, measure

The registry (harness.stages.registry) is the wiring: the model chain, each stage's inputs and the config
sections that key it come from there; only the fan-out per TVM target and per device and runtime is code here.
A node's key hashes its stage, code version, its own config sections and its inputs' keys, so two variants
that differ only in quantization share the teacher, the importance scores and the trained student (a graph,
not N copies), and the same key in a later run means the same work (resume, caching). Nodes are listed in
dependency order.
"""

from dataclasses import dataclass, field

from eibutil.files import content_key
from harness.config.identity import content_view
from harness.config.variants import Variant
from harness.stages import registry as reg
from harness.stages.state import Payload


@dataclass
class Node:
    key: str
    stage: str  # a name in harness.stages.registry.REGISTRY
    variant_ids: list[str]
    deps: list[str]
    payload: Payload  # what the stage function needs besides its deps' outputs
    dep_stages: list[str] = field(default_factory=list)  # the stage of each dependency, in `deps` order

    @property
    def variant_id(self) -> str:
        """The variant a result row belongs to; "" for work shared by several variants."""
        return self.variant_ids[0] if len(self.variant_ids) == 1 else ""

    @property
    def label(self) -> str:
        p = self.payload
        extra = p.device or p.target or ""
        return f"{self.stage}{'@' + extra if extra else ''}{'/' + p.runtime if p.runtime else ''}"


def _value(cfg_json: dict, path: str):
    node = cfg_json
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _pick(cfg_json: dict, paths: tuple[str, ...], when: tuple[tuple[str, str], ...] = ()) -> dict:
    """The values of `paths`; a path with a condition in `when` only where the condition's value is true."""
    cond = dict(when)
    return {p: _value(cfg_json, p) for p in paths if p not in cond or _value(cfg_json, cond[p])}


class _Graph:
    def __init__(self):
        self.nodes: dict[str, Node] = {}

    def add(self, stage: str, cj: dict, variant: Variant, deps: list[tuple[str, str]], payload: dict, **data) -> str:
        """The node of `stage` over `deps` ((stage, key) pairs) for `variant`; its key: the stage, its version,
        its config sections, its inputs' keys and `data` (the fan-out's target, device, runtime)."""
        st = reg.REGISTRY[stage]
        key = content_key({"stage": stage, "version": st.version, "config": _pick(cj, st.sections, st.when),
                           "inputs": [list(d) for d in deps], **data})
        if key in self.nodes:
            if variant.variant_id not in self.nodes[key].variant_ids:
                self.nodes[key].variant_ids.append(variant.variant_id)
        else:
            self.nodes[key] = Node(key, stage, [variant.variant_id], [k for _, k in deps], Payload(variant.config, **payload),
                                   [s for s, _ in deps])
        return key

    def builds(self, cj: dict, v: Variant, inventory, model: tuple[str, str]) -> dict[str, str]:
        """{target: build node key}: one build of the model per TVM target the config or its devices name."""
        m, out = cj["measure"], {}
        if reg.ROLES.build is None or "tvm" not in m["runtimes"]:
            return out
        for target in dict.fromkeys([*cj["targets"], *(inventory[d].target for d in cj["devices"])]):
            # a build for devices that all sit behind one Ray node is made there (where it is uploaded from)
            pins = {inventory[d].ray_resource for d in cj["devices"] if inventory[d].target == target
                    and "tvm" in inventory[d].runtimes}
            pin = pins.pop() if len(pins) == 1 else None
            out[target] = self.add(reg.ROLES.build, cj, v, [model], {"target": target, **({"pin": pin} if pin else {})},
                                   target=target)
        return out

    def measurements(self, cj: dict, v: Variant, inventory, keys: dict[str, str], builds: dict[str, str]) -> None:
        """One measurement per device and runtime, and the reference stage's on every device (fp32, onnxruntime)."""
        stage, model = reg.ROLES.measure, reg.ROLES.model
        if stage is None:
            return
        ref, m = reg.REGISTRY[stage].reference, cj["measure"]
        for d in cj["devices"]:
            spec = inventory[d]
            if ref and m["teacher"] and "onnxruntime" in spec.runtimes:
                self.add(stage, cj, v, [(ref, keys[ref])], {"device": d, "runtime": "onnxruntime", "target": None,
                                                             "subject": ref}, device=d, runtime="onnxruntime")
            for runtime in (r for r in m["runtimes"] if r in spec.runtimes):
                deps = [(model, keys[model])] + ([(reg.ROLES.build, builds[spec.target])] if runtime == "tvm" else [])
                target = spec.target if runtime == "tvm" else None
                self.add(stage, cj, v, deps, {"device": d, "runtime": runtime, "target": target}, device=d, runtime=runtime)


def build_graph(variants: list[Variant], inventory) -> list[Node]:
    """Nodes in dependency order; `inventory` maps device names to `DeviceSpec`s."""
    g = _Graph()
    for v in variants:
        cj = content_view(v.config)  # paths as the content they name: the same keys from any checkout
        keys: dict[str, str] = {}
        for stage in reg.ROLES.chain:
            keys[stage] = g.add(stage, cj, v, [(i, keys[i]) for i in reg.REGISTRY[stage].inputs], {})
        builds = g.builds(cj, v, inventory, (reg.ROLES.model, keys[reg.ROLES.model]))
        g.measurements(cj, v, inventory, keys, builds)
    return list(g.nodes.values())
