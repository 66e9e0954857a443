"""Rendering: data to stdout, progress and warnings to stderr, one JSON document with --output json.

Imports only rich and the standard library, so `--help` stays fast.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
import time
from enum import Enum
from typing import Any, Callable, Iterator, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from s3tstream.lake.exactjson import exact_json


class Format(str, Enum):
    text = "text"
    json = "json"
    csv = "csv"


# Piped or redirected output has no width to fit: rich would assume 80 columns and cut table cells
# (identifiers) to fit. Tables there take the width their content needs.
UNBOUNDED = 1_000_000


def _console(*, stderr: bool, soft_wrap: bool) -> Console:
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
            tag = f"[dim]{escape(prefix)}[/dim] " if prefix else ""
            with self._lock:
                if waiting and self.err.is_terminal:
                    self._spin(f"{tag}{escape(msg)}")
                    return
                self._stop_spinner()
                last = self._last.get(prefix)
                now = time.monotonic()
                if last and last[0] == stem and now - last[1] < 15:
                    return
                self._last[prefix] = (stem, now)
                self.err.print(f"{tag}{escape(msg)}", markup=True, highlight=False)

        return report

    def _spin(self, text: str) -> None:
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

    # Messages are plain text: a config key's "[section]" must print as written, never be read as
    # rich markup (tests/test_cli_foundation.py scans for lost section names). Style goes in `tag`.
    def info(self, msg: str, *, tag: str = "", style: str = "") -> None:
        if not self.quiet:
            self.err.print(self._tagged(tag, style, msg))

    def warn(self, msg: str) -> None:
        self.err.print(self._tagged("warning:", "yellow", msg))

    @staticmethod
    def _tagged(tag: str, style: str, msg: str) -> Text:
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
        with self.err.status(what) as status:
            yield lambda msg: status.update(f"{what}: {escape(msg)}")

    def table(self, title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
        """Cells are plain text (data like "[a, b]" is not markup); pass a rich Text to style one."""
        t = Table(title=title, show_lines=False, title_justify="left")
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*[v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in r])
        self.out.print(t)

    @staticmethod
    def styled(text: str, style: str) -> Text:
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
