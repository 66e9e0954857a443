"""Rendering: data to stdout, progress and warnings to stderr, one JSON document with --output json.

Imports only the standard library at import time (rich when an Output is made), so `--help` stays fast.
Every message is plain text: a config key's "[section]" prints as written, never read as rich markup
(tests/test_cli_foundation.py scans the messages for lost section names); style goes in tags.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
import time
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Iterator, NoReturn

from s3tstream.lake.exactjson import exact_json

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


class Format(str, Enum):
    text = "text"
    json = "json"
    csv = "csv"


# Piped or redirected output has no width to fit: rich would assume 80 columns and cut table cells
# (identifiers) to fit. Tables there take the width their content needs.
UNBOUNDED = 1_000_000


def _console(*, stderr: bool, soft_wrap: bool) -> "Console":
    from rich.console import Console

    c = Console(stderr=stderr, soft_wrap=soft_wrap, highlight=False)
    if not c.is_terminal and not c.is_jupyter:
        c = Console(stderr=stderr, soft_wrap=soft_wrap, highlight=False, width=UNBOUNDED)
    return c


class Output:
    def __init__(self, fmt: Format = Format.text, quiet: bool = False) -> None:
        self.fmt = fmt
        self.quiet = quiet
        self.out = _console(stderr=False, soft_wrap=True)
        # stderr lines are never wrapped: a long hint stays one line (a path or a command, whole)
        self.err = _console(stderr=True, soft_wrap=True)
        self._lock = threading.Lock()
        self._last: dict[str, tuple[str, float]] = {}
        self._status: Any = None  # a live spinner while something is being waited for (TTY only)

    @property
    def is_json(self) -> bool:
        return self.fmt == Format.json

    # -- progress (stderr) --------------------------------------------------
    def progress(self, prefix: str = "") -> Callable[[str], None]:
        """A progress callback for stderr. Waits ("what: STATUS (12s)") show as a spinner with the
        elapsed time on a terminal; elsewhere, and for events, a line when the status changes
        (and every 15 s while it does not)."""

        def report(msg: str) -> None:
            if self.quiet:
                return
            waiting = msg.endswith("s)") and " (" in msg
            stem = msg.rsplit(" (", 1)[0] if waiting else msg
            line = self._tagged(prefix, "dim", msg)
            with self._lock:
                if waiting and self.err.is_terminal:
                    self._spin(line)
                    return
                self._stop_spinner()
                last = self._last.get(prefix)
                now = time.monotonic()
                if last and last[0] == stem and now - last[1] < 15:
                    return
                self._last[prefix] = (stem, now)
                self.err.print(line, highlight=False)

        return report

    def _spin(self, text: "Text") -> None:
        if self._status is None:
            self._status = self.err.status(text, spinner="dots")
            self._status.start()
            atexit.register(self._stop_spinner)
        else:
            self._status.update(text)

    def _stop_spinner(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def info(self, msg: str, *, tag: str = "", style: str = "") -> None:
        if not self.quiet:
            self.err.print(self._tagged(tag, style, msg))

    def warn(self, msg: str) -> None:
        self.err.print(self._tagged("warning:", "yellow", msg))

    @staticmethod
    def _tagged(tag: str, style: str, msg: str) -> "Text":
        from rich.text import Text

        t = Text()
        if tag:
            t.append(tag, style=style)
            t.append(" ")
        t.append(msg)
        return t

    # -- results (stdout) -----------------------------------------------------
    def json(self, doc: Any) -> None:
        """The one JSON writer for --output json: Decimals as exact numbers, datetimes as ISO-8601."""
        sys.stdout.write(exact_json(doc) + "\n")
        sys.stdout.flush()

    def json_result(self, doc: dict[str, Any], err: Any) -> None:
        """One JSON document for a command that may end in an error: the error goes in the document
        (as {"error": ...}) and sets the exit code."""
        if err:
            doc["error"] = err.to_dict()
        self.json(doc)
        if err:
            raise SystemExit(err.exit_code)

    @contextlib.contextmanager
    def spinner(self, what: str) -> Iterator[Callable[[str], None]]:
        """A progress callback: a spinner on a terminal, plain lines otherwise (stderr)."""
        if self.quiet or self.is_json or not self.err.is_terminal:
            yield self.progress(what)
            return
        with self.err.status(self._tagged("", "", what)) as status:
            yield lambda msg: status.update(self._tagged("", "", f"{what}: {msg}"))

    def table(self, title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
        """Cells are plain text (data like "[a, b]" is not markup); pass styled() to style one.

        Nothing is ever cut: a cell wraps at spaces (a word longer than its column folds), and on a
        terminal too narrow for the longest word of every column the rows print one field a line."""
        from rich.table import Table
        from rich.text import Text

        cells = [[v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in r] for r in rows]
        # a column is never narrower than its longest word: identifiers have no spaces, so they stay whole
        longest = [max([len(h)] + [max((len(w) for w in r[i].plain.split()), default=0) for r in cells])
                   for i, h in enumerate(columns)]
        if sum(longest) + 3 * len(columns) + 1 <= self.out.width:
            t = Table(title=title, show_lines=False, title_justify="left")
            for c, n in zip(columns, longest):
                t.add_column(c, overflow="fold", min_width=n)
            for r in cells:
                t.add_row(*r)
            self.out.print(t)
            return
        # vertical: "column  value" per line (empty ones left out), a blank line between rows
        if title:
            self.out.print(Text(title, style="italic"))
        pad = max(len(c) for c in columns)
        for i, r in enumerate(cells):
            if i:
                self.out.print()
            for c, v in zip(columns, r):
                if v.plain:
                    self.out.print(Text.assemble((c.ljust(pad), "bold"), "  ", v), soft_wrap=True)

    @staticmethod
    def styled(text: str, style: str) -> "Text":
        from rich.text import Text

        return Text(text, style=style)

    def line(self, msg: str = "") -> None:
        self.out.print(msg, markup=False, highlight=False)

    # -- errors -------------------------------------------------------------
    def fail(self, code: str, message: str, hint: str = "", exit_code: int = 1) -> NoReturn:
        if self.is_json:
            self.json({"error": {"code": code, "message": message, "hint": hint}})
        else:
            self.err.print(self._tagged("error:", "bold red", message), highlight=False)
            if hint:
                self.err.print(self._tagged("hint:", "dim", hint), highlight=False)
        raise SystemExit(exit_code)
