"""YAML reading shared by the catalog and lab files: fast load, precise error locations."""

from __future__ import annotations

from typing import Any

import yaml

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str, source: str) -> tuple[Any, str | None]:
    """Parse YAML; return (data, None) or (None, one message naming the file and line)."""
    try:
        return yaml.load(text, Loader=_Loader), None  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        return None, f"{where}: malformed YAML: {problem}"


def format_loc(loc: tuple[Any, ...]) -> str:
    """('types', 3, 'vcpus') -> 'types[3].vcpus'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the node at ``loc`` (or its nearest existing parent), if findable."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if node is None:
            break
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    nxt = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                nxt = node.value[part]
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def pydantic_problems(errors: list[Any], text: str, source: str) -> list[str]:
    """One line per pydantic error: file:line, the YAML path, what is wrong, the bad value."""
    problems = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        line = line_of(text, loc)
        where = f"{source}:{line}" if line else source
        value = err.get("input")
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        msg = err.get("msg", "invalid")
        if err.get("type") == "missing":
            problems.append(f"{where}: {format_loc(loc)}: field required")
        elif err.get("type") in ("extra_forbidden", "unexpected_keyword_argument"):
            # The second is what a validated stdlib dataclass reports for an unknown key.
            problems.append(f"{where}: {format_loc(loc)}: unknown key")
        else:
            problems.append(f"{where}: {format_loc(loc)}: {msg} (got {shown})")
    return problems
