"""Typed stage records that round-trip through JSON exactly.

    @dataclass
    class Teacher(Record):
        model_dir: str
        extra: dict = field(default_factory=dict)

    rec = Teacher.from_json({"model_dir": "/c/teacher/ab", "node_key": "k"})   # rec.extra == {"node_key": "k"}
    rec.to_json() == {"model_dir": "/c/teacher/ab", "node_key": "k"}

Fields typed as another Record are rebuilt from their JSON; keys a record does not name go to its
`extra` field when it has one (the harness adds run facts: node, attempts) and are dropped otherwise.
"""

import dataclasses
import typing


class Record:
    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "extra":
                continue
            out[f.name] = v.to_json() if isinstance(v, Record) else v
        return {**out, **(getattr(self, "extra", None) or {})}

    @classmethod
    def from_json(cls, d: dict):
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        kw, extra = {}, {}
        for k, v in d.items():
            if k in names and k != "extra":
                sub = hints.get(k)
                kw[k] = sub.from_json(v) if isinstance(sub, type) and issubclass(sub, Record) and isinstance(v, dict) else v
            else:
                extra[k] = v
        if "extra" in names:
            kw["extra"] = extra
        return cls(**kw)
