"""Strict YAML loading and one-line validation messages that name the file, the key and what is allowed.

    >>> from pydantic import BaseModel, ConfigDict
    >>> class M(BaseModel):
    ...     model_config = ConfigDict(extra="forbid")
    ...     epochs: int = 1
    >>> try:
    ...     M.model_validate({"epoch": 3})
    ... except Exception as e:
    ...     print(validation_error("x.yaml", e, M))
    x.yaml: epoch: unknown key; allowed: epochs
"""

import typing
from pathlib import Path
from typing import Any

import yaml

from eibutil.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


MAX_BYTES = 1_000_000  # a config or inventory larger than this is refused unread
MAX_VALUES = 100_000  # values after expanding aliases (an alias bomb is refused before it is built)
MAX_DEPTH = 64  # nesting of mappings and lists


def _check_size(node: yaml.Node, file: str) -> None:
    """Count the values `node` expands to (aliases included) and its depth, without building it."""
    memo: dict[int, tuple[int, int]] = {}

    def walk(n: yaml.Node, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise ConfigError(file, "", f"nested deeper than {MAX_DEPTH} levels")
        if id(n) in memo:
            return memo[id(n)]
        if isinstance(n, yaml.MappingNode):
            kids = [c for kv in n.value for c in kv]
        elif isinstance(n, yaml.SequenceNode):
            kids = list(n.value)
        else:
            kids = []
        count, deep = 1, 0
        for c in kids:
            cc, cd = walk(c, depth + 1)
            count, deep = count + cc, max(deep, cd + 1)
            if count > MAX_VALUES:
                raise ConfigError(file, "", f"expands to more than {MAX_VALUES:,} values (YAML aliases?)")
        memo[id(n)] = (count, deep)
        return memo[id(n)]

    walk(node, 0)


def _parse(text: str, file: str):
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, file)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(path: str | Path, *, what: str = "file") -> dict:
    """Read a YAML mapping from `path`; a missing file or bad YAML becomes a `ConfigError`, and so does
    one over MAX_BYTES, one whose aliases expand past MAX_VALUES values or one nested past MAX_DEPTH."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "", f"{what} not found")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ConfigError(str(path), "", f"{what} is {size:,} bytes; at most {MAX_BYTES:,}")
    try:
        data = _parse(path.read_text(encoding="utf-8"), str(path))
    except RecursionError:
        raise ConfigError(str(path), "", f"nested deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(str(path), "", f"invalid YAML: {where}{problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "not UTF-8 text") from None
    if data is None:
        raise ConfigError(str(path), "", f"{what} is empty")
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"expected a mapping of keys at the top, got {type(data).__name__}")
    return data


def models_in(annotation: Any) -> list[type]:
    """The pydantic model classes an annotation can hold (through Optional, list, dict, Annotated)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found += models_in(arg)
    return found


def _allowed_keys(model: type, loc: tuple) -> list[str] | None:
    """Field names of the model that `loc` points into, or None if it cannot be told."""
    candidates = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt = []
        for m in candidates:
            field = m.model_fields.get(part)
            if field is not None:
                nxt += models_in(field.annotation)
        if not nxt:
            return None
        candidates = nxt
    return sorted(candidates[0].model_fields) if candidates else None


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before", "function-wrap", "function-plain"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _short(value: Any) -> str:
    """A value for an error message: at most 60 characters, never built whole (reprlib bounds the work)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset, r.maxstring, r.maxother = 2, 4, 4, 4, 4, 50, 50
    text = r.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_error(file: str | Path, exc: Exception, model: type, prefix: str = "") -> ConfigError:
    """Turn a pydantic `ValidationError` into one `ConfigError` line (the first error, plus a count)."""
    errors = exc.errors(include_url=False)  # type: ignore[attr-defined]
    err = errors[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tagged-union"))))
    key = format_loc(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        msg = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    elif kind == "missing":
        msg = "required key is missing"
    elif kind in ("value_error", "assertion_error"):
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
    else:
        msg = err["msg"]
        if "input" in err and kind not in ("model_type", "dict_type") and not isinstance(err["input"], dict):
            msg += f" (got {_short(err['input'])})"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    if prefix:
        key = f"{prefix}.{key}" if key else prefix
    return ConfigError(str(file), key, msg)
