"""Reading the files users hand us, with bounds, and YAML with precise error locations.

Every file a user gives nestcloud (a catalog, a lab file, user data) is read through
``read_text_bounded``: regular files only (a FIFO or /dev/zero would block or never end) and
the size checked before reading. YAML goes through ``load_yaml``, which composes the node graph
(libyaml where PyYAML has it), checks it, and only then builds Python data from it:

- aliases may add at most ``MAX_ALIAS_NODES`` nodes to the document once expanded. PyYAML
  shares the aliased object, so loading a "billion laughs" file is cheap, but everything that
  walks the result afterwards (validation, error messages, JSON) pays for the expansion;
- nesting is limited to ``MAX_DEPTH`` levels (PyYAML's constructor recurses; libyaml alone
  stops at 1000, the pure-Python composer at Python's recursion limit);
- a key given twice in one mapping is an error (PyYAML silently keeps the last one). Keys a
  merge (``<<``) brings in may be overridden: that is what merges are for.

Messages name the file and line and never quote more than a short, bounded excerpt.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any, Literal

import yaml

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Nesting levels a document may have (mappings and sequences). Our own files use fewer than 10.
MAX_DEPTH = 64
#: Nodes that aliases may add to a document once expanded, beyond the nodes written in it.
MAX_ALIAS_NODES = 10_000

# Size limits per kind of file, checked before reading. Generous: the shipped catalog is
# ~0.3 MB, lab files are a screenful, and user data must fit 16 KB (EC2) even gzipped.
MAX_CATALOG_BYTES = 8 * 1024 * 1024
MAX_LAB_BYTES = 1024 * 1024
MAX_USER_DATA_BYTES = 1024 * 1024

_MERGE_TAG = "tag:yaml.org,2002:merge"
_SIZE_CLAMP = 1 << 40  # expanded sizes are only compared with the budget: keep them small


class FileRefused(Exception):
    """A file nestcloud will not read; ``reason`` says why without quoting its content."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def read_bounded(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    ``what`` names the kind of file in the size message ("a lab file"). Raises FileRefused.
    """
    # O_NONBLOCK: opening a FIFO nobody writes to must not wait; fstat on the open file then
    # decides, so a file swapped in between a stat() and the open() cannot slip through.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
        | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileRefused(path, "file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise FileRefused(path, f"cannot read it: {_why(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
            raise FileRefused(path, f"not a regular file ({kind})")
        if st.st_size > limit:
            raise FileRefused(path, f"it is {st.st_size} bytes; {what} may be at most "
                                    f"{limit} bytes")
        chunks: list[bytes] = []
        got = 0
        while got <= limit:  # a file that grows while we read is cut at limit + 1 bytes
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise FileRefused(path, f"cannot read it: {_why(exc)}") from None
    finally:
        os.close(fd)
    if got > limit:
        raise FileRefused(path, f"it grew past {limit} bytes while being read; {what} may be "
                                f"at most {limit} bytes")
    return b"".join(chunks)


def read_text_bounded(path: str | os.PathLike[str], what: str, limit: int) -> str:
    """``read_bounded``, decoded as UTF-8 (the offset of a bad byte, never the byte itself)."""
    return decode_utf8(read_bounded(path, what, limit), path)


def decode_utf8(data: bytes, path: str | os.PathLike[str]) -> str:
    """UTF-8 text, or FileRefused naming the offset of the first bad byte (never the byte)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRefused(path, f"not UTF-8 text (bad byte at offset {exc.start})") from None


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


# -- YAML ------------------------------------------------------------------------------------


def load_yaml(text: str, source: str) -> tuple[Any, str | None]:
    """Parse YAML within the bounds above; return (data, None) or (None, one message naming
    the file and line)."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            return None, _yaml_problem(exc, source)
        except RecursionError:  # the pure-Python composer, when libyaml is missing
            return None, f"{source}: nested deeper than {MAX_DEPTH} levels"
        if node is None:
            return None, None
        problem = _graph_problem(node, source, loader)
        if problem:
            return None, problem
        try:
            return loader.construct_document(node), None
        except yaml.YAMLError as exc:
            return None, _yaml_problem(exc, source)
        except (ValueError, TypeError, OverflowError, RecursionError):
            # e.g. `!!int x` or a date like 2026-13-45: PyYAML raises the bare error, whose
            # text quotes the value.
            return None, f"{source}: malformed YAML: a value does not match its type"
    finally:
        loader.dispose()


def load_yaml_nodes(text: str) -> tuple[yaml.Node, Any] | None:
    """The node graph of ``text`` and the data PyYAML builds from it (a repeated key keeps its
    last value, as for cloud-init), within the same bounds as ``load_yaml``; None when the text
    is not such YAML. For readers that must see what a YAML consumer sees: the secret scan."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None or _graph_problem(node, "") is not None:
            return None
        return node, loader.construct_document(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
        return None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, source: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    problem = getattr(exc, "problem", None) or type(exc).__name__
    if "nesting depth" in problem:  # libyaml's own limit (1000), past ours
        return f"{source}:{mark.line + 1 if mark else 1}: nested deeper than {MAX_DEPTH} levels"
    return f"{where}: malformed YAML: {problem}"


_STR_TAG = "tag:yaml.org,2002:str"


def _graph_problem(root: yaml.Node, source: str, loader: Any = None) -> str | None:
    """Recursive aliases, nesting past MAX_DEPTH, aliases that expand too far, and (given the
    ``loader`` that builds keys) the first key given twice in one mapping.

    One iterative pass over the distinct nodes (an alias is the same node object as its
    anchor), so a bomb costs what its file costs, not what it expands to.
    """
    height: dict[int, int] = {}
    size: dict[int, int] = {}
    on_path: set[int] = set()
    duplicates: list[tuple[int, int, str]] = []
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    scalar = yaml.ScalarNode
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            if isinstance(node, yaml.MappingNode):
                kids = [n for pair in node.value for n in pair]
                if loader is not None:
                    _duplicate_keys(loader, node, duplicates)
            else:
                kids = node.value
            h = 0
            n = 1
            for kid in kids:
                k = id(kid)
                if height[k] > h:
                    h = height[k]
                n += size[k]
            h += 1
            if h > MAX_DEPTH:
                return f"{source}:{node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels"
            height[key] = h
            size[key] = min(n, _SIZE_CLAMP)
            continue
        if key in height:
            continue
        if node.__class__ is scalar:
            height[key] = 0
            size[key] = 1
            continue
        if key in on_path:  # only the nodes being walked are on the path: this is a cycle
            return f"{source}:{node.start_mark.line + 1}: an alias refers to itself"
        on_path.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            stack.extend((n, False) for pair in node.value for n in pair if id(n) not in height)
        else:
            stack.extend((n, False) for n in node.value if id(n) not in height)
    if size[id(root)] - len(height) > MAX_ALIAS_NODES:
        return (f"{source}: aliases expand the document by more than {MAX_ALIAS_NODES} nodes "
                "(an alias bomb?)")
    if duplicates:
        _, line, what = min(duplicates)
        return f"{source}:{line}: {what}"
    return None


def _duplicate_keys(loader: Any, node: yaml.MappingNode,
                    found: list[tuple[int, int, str]]) -> None:
    """Record keys given twice in ``node`` (compared as the Python keys they become)."""
    keys: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # complex keys: the constructor refuses unhashable ones itself
        if key_node.tag == _STR_TAG:
            ident: Any = key_node.value
        elif key_node.tag == _MERGE_TAG:
            ident = ("<<",)
        else:
            try:
                ident = loader.construct_object(key_node)
                hash(ident)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError):
                continue  # reported when the document is built
        first = keys.get(ident)
        if first is None:
            keys[ident] = key_node
            continue
        shown = "<<" if key_node.tag == _MERGE_TAG else short_repr(ident, 40)
        found.append((key_node.start_mark.index, key_node.start_mark.line + 1,
                      f"duplicate key {shown} (first at line {first.start_mark.line + 1})"))


# -- error messages ----------------------------------------------------------------------------


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, without ever building more than that.

    The same text as repr() for the plain data YAML gives (dicts keep their order)."""
    parts: list[str] = []
    _bounded_repr(value, parts, [limit + 1], 0)
    out = "".join(parts)
    return out if len(out) <= limit else out[:limit - 3] + "..."


def _bounded_repr(value: Any, out: list[str], budget: list[int], depth: int) -> None:
    def put(s: str) -> None:
        out.append(s[:max(budget[0], 0)])
        budget[0] -= len(s)

    if budget[0] <= 0:
        return
    if isinstance(value, (str, bytes)):
        put(repr(value[:budget[0]]) if len(value) > budget[0] else repr(value))
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        if depth >= 8:
            put("...")
            return
        if isinstance(value, dict):
            open_, close, items = "{", "}", list(value.items()) if len(value) < 64 else [
                kv for _, kv in zip(range(64), value.items())]
        elif isinstance(value, list):
            open_, close, items = "[", "]", value[:64]
        elif isinstance(value, tuple):
            open_, close, items = "(", ",)" if len(value) == 1 else ")", list(value[:64])
        else:
            open_, close, items = "{", "}", [v for _, v in zip(range(64), value)]
        put(open_)
        for i, item in enumerate(items):
            if budget[0] <= 0:
                return
            if i:
                put(", ")
            if isinstance(value, dict):
                _bounded_repr(item[0], out, budget, depth + 1)
                put(": ")
                _bounded_repr(item[1], out, budget, depth + 1)
            else:
                _bounded_repr(item, out, budget, depth + 1)
        put(close)
    elif isinstance(value, (int, float, bool, type(None))) or type(value).__module__ == "datetime":
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
            put(f"<an integer of {value.bit_length()} bits>")
        else:
            put(repr(value))
    else:
        put(f"<{type(value).__name__}>")


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
    except (yaml.YAMLError, RecursionError):
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


Style = Literal["file", "flag", "keyword"]


def pydantic_problems(errors: list[Any], text: str | None = None, source: str | None = None,
                      *, style: Style = "file", flags: Mapping[str, str] | None = None
                      ) -> list[str]:
    """One line per pydantic error, naming where the bad value came from. The one place
    nestcloud turns pydantic errors into messages:

    - ``style="file"``: ``source:line: yaml.path: what is wrong (got value)``, the line found
      in ``text`` (lab files, catalogs);
    - ``style="flag"``: ``--flag value: what is wrong``, the flag being the field's name with
      '-' for '_' unless ``flags`` maps the field to another (CLI options);
    - ``style="keyword"``: ``keyword: what is wrong (got value)`` (the Python API).

    Values are shown bounded (``short_repr``); "Value error, " prefixes are dropped.
    """
    problems = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        kind = err.get("type")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        value = err.get("input")
        if style == "flag":
            if not loc:
                problems.append(msg)
                continue
            flag = (flags or {}).get(str(loc[0])) or "--" + str(loc[0]).replace("_", "-")
            if kind == "missing":
                problems.append(f"{flag}: required")
            elif kind in _UNKNOWN:
                problems.append(f"{flag}: unknown option")
            else:
                problems.append(f"{flag} {_flag_value(value)}: {msg}")
            continue
        path = format_loc(loc)
        if style == "file":
            line = line_of(text, loc) if text is not None else None
            where = f"{source}:{line}: " if line else f"{source}: " if source else ""
        else:
            where = ""
            if not loc:
                problems.append(msg)
                continue
        if kind == "missing":
            problems.append(f"{where}{path}: field required")
        elif kind in _UNKNOWN:
            problems.append(f"{where}{path}: " + ("unknown key" if style == "file"
                                                  else "unexpected keyword argument"))
        else:
            problems.append(f"{where}{path}: {msg} (got {short_repr(value)})")
    return problems


# extra="forbid" reports extra_forbidden; a validated call, unexpected_keyword_argument.
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


def _flag_value(value: Any) -> str:
    """A flag's value as typed back to the user: numbers in full (the user wrote them; Python
    prints up to 4300 digits), anything else bounded."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return repr(value)
        except ValueError:  # an integer past Python's digit limit
            pass
    return short_repr(value)


__all__ = ["FileRefused", "MAX_ALIAS_NODES", "MAX_CATALOG_BYTES", "MAX_DEPTH", "MAX_LAB_BYTES",
           "MAX_USER_DATA_BYTES", "decode_utf8", "format_loc", "line_of", "load_yaml",
           "load_yaml_nodes", "pydantic_problems", "read_bounded", "read_text_bounded",
           "short_repr"]
