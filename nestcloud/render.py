"""One renderer per format for every result nestcloud prints or returns.

    to_table(result, **options) -> str   the terminal text: lines and plain aligned tables
    to_json(result, **options)  -> Any   the --json document (a public contract: tests pin it)
    to_html(result)             -> str   the notebook view, every value escaped

A result says what it shows by subclassing :class:`Rendered` and declaring:

    columns              (ClassVar) the header of its table
    rows()               the table's cells, as text
    caption()            one line saying what the table shows
    text(**options)      the terminal text top to bottom, lines and :class:`Table` blocks
                         (default: the caption, then the table when it has rows)
    json_doc(**options)  the --json document (default: ``to_dict()``)
    empty()              what a notebook says instead of an empty table (default: nothing,
                         the empty table is shown)

Nothing else formats results: the CLI calls these three functions, and ``_repr_html_`` is
inherited. Standard library only, so `check` and `catalog list` render without loading more
than they did (bench/bench_cli.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Table:
    """A table inside a result's terminal text."""

    columns: Sequence[str]
    rows: Sequence[Sequence[str]]


Block = str | Table


class Rendered:
    """What a result shows; the renderers of this module read it (see the module doc)."""

    columns: ClassVar[tuple[str, ...]] = ()

    def rows(self) -> list[list[str]]:
        return []

    def caption(self) -> str:
        return ""

    def table(self) -> Table:
        return Table(self.columns, self.rows())

    def text(self, **options: Any) -> list[Block]:
        rows = self.rows()
        caption = self.caption()
        return [*([caption] if caption else []), *([Table(self.columns, rows)] if rows else [])]

    def json_doc(self, **options: Any) -> Any:
        return self.to_dict()  # type: ignore[attr-defined]

    def empty(self) -> tuple[str, str] | None:
        """(headline, detail) a notebook shows instead of a table without rows."""
        return None

    def _repr_html_(self) -> str | None:
        # None: Jupyter falls back to the text repr for a result that declares no table.
        return to_html(self) if self.columns else None


def to_table(result: Rendered, **options: Any) -> str:
    """The terminal text of ``result`` ("" when it has nothing to say on stdout)."""
    out = [b if isinstance(b, str) else table(b.rows, b.columns)
           for b in result.text(**options)]
    return "\n".join(out)


def to_json(result: Rendered, **options: Any) -> Any:
    """The --json document of ``result``: plain data, exactly as the CLI prints it."""
    return result.json_doc(**options)


def to_html(result: Rendered) -> str:
    """The notebook view of ``result``: its table under its caption, every value escaped."""
    from html import escape

    rows = result.rows()
    if not rows:
        empty = result.empty()
        if empty is not None:
            head, detail = empty
            return f"<p><b>{escape(head)}</b> {escape(detail)}</p>"
    return html_table(result.columns, rows, result.caption())


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """A plain aligned text table (no colour: it must read the same in logs)."""
    cols = [headers, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(headers))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def html_table(heads: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    """A small HTML table; the caption, the headers and every cell are escaped."""
    from html import escape  # html.entities is big: terminals never need it

    h = "".join(f"<th>{escape(str(x))}</th>" for x in heads)
    b = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>"
                for r in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def yes_no(value: bool | None) -> str:
    """A tri-state flag as the tables show it."""
    return {True: "yes", False: "NO", None: "?"}[value]


__all__ = ["Block", "Rendered", "Table", "html_table", "table", "to_html", "to_json",
           "to_table", "yes_no"]
