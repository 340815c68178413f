"""Expand a config's sweep into variants, each with a content hash for an id.

    from harness.config.load import load_config
    from harness.config.variants import expand
    for v in expand(load_config("configs/quickstart.yaml"), "configs/quickstart.yaml"):
        print(v.variant_id, v.name, v.overrides)

A variant is the base config with some dotted keys set. Its id hashes the config by content
(harness.config.identity) without the keys that cannot change a result (name, sweep, results, where caches
go), so two sweeps that reach the same settings share ids and cached stages, from any checkout.
"""

import copy
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eibutil import ConfigError
from eibutil.files import ID_CHARS, content_key
from eibutil.yamlio import models_in
from harness.config.identity import content_view
from harness.config.load import validate_config
from harness.config.schema import ExperimentConfig

# Keys that describe the experiment, not a variant's result.
_NOT_HASHED = ("name", "sweep", "results")
_NOT_SWEEPABLE = ("name", "sweep", "results", "cache_dir", "inventory")

ABLATIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    # The EI-BERT ladder: each rung adds one stage of the method.
    "eibert": [
        ("finetune",
         {"compress.distill.mode": "finetune", "compress.distill.integrate": False, "compress.quant.granularity": "none"}),
        ("standard-kd",
         {"compress.distill.mode": "standard", "compress.distill.integrate": False, "compress.quant.granularity": "none"}),
        ("cross-kd-no-integration",
         {"compress.distill.mode": "cross", "compress.distill.integrate": False, "compress.quant.granularity": "none"}),
        ("cross-kd",
         {"compress.distill.mode": "cross", "compress.distill.integrate": True, "compress.quant.granularity": "none"}),
        ("cross-kd+int8-lsq", {"compress.distill.mode": "cross", "compress.distill.integrate": True,
                               "compress.quant.granularity": "per-channel", "compress.quant.method": "lsq"}),
    ]
}


@dataclass(frozen=True)
class Variant:
    variant_id: str
    name: str
    overrides: dict[str, Any]
    config: ExperimentConfig = field(repr=False)

    def to_json(self) -> dict:
        return {"variant_id": self.variant_id, "name": self.name, "overrides": self.overrides}


def config_hash(cfg: ExperimentConfig, *, exclude: tuple[str, ...] = _NOT_HASHED) -> str:
    """The id: the config by content (harness.config.identity: data by sha256, a teacher folder by fingerprint, no
    output locations), so two checkouts of the same config give the same ids."""
    data = content_view(cfg)
    for k in exclude:
        data.pop(k, None)
    data.get("measure", {}).pop("reuse", None)  # whether to measure again, not what is measured: a nightly keeps the ids
    return content_key(data, ID_CHARS)


def _check_path(dotted: str, file: str, where: str) -> None:
    """Fail unless `dotted` names a key of the config schema."""
    parts = dotted.split(".")
    if parts[0] in _NOT_SWEEPABLE:
        raise ConfigError(file, where, f"'{parts[0]}' cannot be swept")
    models: list[type[BaseModel]] = [ExperimentConfig]
    for i, part in enumerate(parts):
        model = models[0] if models else None
        if model is None or part not in model.model_fields:
            parent = ".".join(parts[:i]) or "the top level"
            allowed = ", ".join(sorted(model.model_fields)) if model else "nothing (not a section)"
            raise ConfigError(file, where, f"unknown key path '{dotted}'; keys under {parent}: {allowed}")
        models = models_in(model.model_fields[part].annotation)


def _set(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    *parents, last = dotted.split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[last] = value


def _label(overrides: dict[str, Any]) -> str:
    if not overrides:
        return "base"
    return ",".join(f"{k.removeprefix('compress.')}={v}" for k, v in overrides.items())


MAX_VARIANTS = 1000  # sweep points one config may expand to


def _points(sweep, file: str) -> list[tuple[str | None, dict[str, Any], str]]:
    """(name, overrides, where) for each point of the sweep, in a stable order."""
    points: list[tuple[str | None, dict[str, Any], str]] = []
    if sweep.ablation:
        for name, ov in ABLATIONS[sweep.ablation]:
            points.append((name, ov, f"sweep.ablation[{name}]"))
    base_points = points or [(None, {}, "sweep")]
    n = len(base_points) * math.prod(len(v) for v in sweep.grid.values()) + len(sweep.variants)
    if n > MAX_VARIANTS:  # refused before anything is expanded
        raise ConfigError(file, "sweep", f"{n:,} sweep points; at most {MAX_VARIANTS:,} per config (split the sweep)")
    if sweep.grid:
        for key in sweep.grid:
            _check_path(key, file, f"sweep.grid.{key}")
        keys = list(sweep.grid)
        grid = []
        for combo in itertools.product(*(sweep.grid[k] for k in keys)):
            grid.append(dict(zip(keys, combo)))
        # The grid crosses every ablation rung (or stands alone).
        points = [
            (f"{n}/{_label(g)}" if n else None, {**ov, **g}, "sweep.grid" if not n else w)
            for (n, ov, w) in base_points
            for g in grid
        ]
    for i, entry in enumerate(sweep.variants):
        for key in entry.set:
            _check_path(key, file, f"sweep.variants[{i}].set.{key}")
        points.append((entry.name, dict(entry.set), f"sweep.variants[{i}]"))
    return points or [(None, {}, "sweep")]


def expand(cfg: ExperimentConfig, file: str | Path, raw: dict | None = None) -> list[Variant]:
    """The variants of `cfg` (one, the base, when it has no sweep). Raises `ConfigError` on bad axes."""
    file = str(file)
    base_raw = raw if raw is not None else cfg.model_dump(mode="json")
    base_dir = Path(file).resolve().parent
    variants: dict[str, Variant] = {}
    for name, overrides, where in _points(cfg.sweep, file):
        r = copy.deepcopy(base_raw)
        r.pop("sweep", None)
        for k, v in overrides.items():
            _set(r, k, v)
        try:
            vcfg = validate_config(r, file, base_dir)
        except ConfigError as e:
            raise ConfigError(file, where, f"gives an invalid config: {e.key}: {e.message}") from None
        vcfg = vcfg.model_copy(update={"sweep": cfg.sweep})
        vid = config_hash(vcfg)
        if vid not in variants:  # two sweep points that land on the same settings are one variant
            variants[vid] = Variant(vid, name or _label(overrides), overrides, vcfg)
    return list(variants.values())
