"""Progress for long operations: on stderr only, and only for a person at a terminal.

With --json, or when stderr is not a TTY (pipes, cron, CI), nothing is shown. rich is an
optional extra ("progress"); without it a TTY gets plain one-line steps.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO


class Progress:
    """A context manager with ``step(text)``: a spinner with rich, plain lines without."""

    def __init__(self, enabled: bool, stream: TextIO | None = None,
                 use_rich: bool | None = None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._status: Any = None
        self._rich = False
        if enabled and use_rich is not False:
            try:
                from rich.console import Console
            except ImportError:
                self._rich = False
            else:
                self._rich = True
                self._console = Console(file=self.stream, stderr=stream is None)

    def __enter__(self) -> Progress:
        if self.enabled and self._rich:
            self._status = self._console.status("starting")
            self._status.__enter__()
        return self

    def step(self, text: str) -> None:
        if not self.enabled:
            return
        if self._status is not None:
            self._status.update(text)
            self._console.log(text)
        else:
            print(f"... {text}", file=self.stream, flush=True)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.__exit__(et, ev, tb)
            self._status = None


def progress(json_output: bool, stream: TextIO | None = None) -> Progress:
    """Progress that is shown only when not --json and stderr is a terminal."""
    s = stream if stream is not None else sys.stderr
    isatty = getattr(s, "isatty", None)
    return Progress(enabled=not json_output and bool(isatty and isatty()), stream=s)
