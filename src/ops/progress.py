"""A progress bar for long runs, on stderr, in plain text: `[#####.....] 12/40 redriven`.

On a terminal it redraws one line; elsewhere (CI logs, a pipe) it writes a line every tenth of the
way, so that logs stay short. stdout is left alone for the command's result (and --json).
"""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, total: int | None, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._last_tenth = -1
        self._drawn = False

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._tty:
            self._stream.write("\r" + self.render())
            self._stream.flush()
            self._drawn = True
            return
        tenth = (self.done * 10 // self.total) if self.total else self.done // 100
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self._stream.write(self.render() + "\n")
            self._stream.flush()

    def update(self, done: int, label: str) -> None:
        """Set the count and the words after it (for runs that report totals as they go)."""
        self.label = label
        self.advance(done - self.done)

    def render(self) -> str:
        if not self.total:
            return f"{self.done} {self.label}"
        filled = min(WIDTH, self.done * WIDTH // self.total)
        bar = "#" * filled + "." * (WIDTH - filled)
        return f"[{bar}] {self.done}/{self.total} {self.label}"

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False
