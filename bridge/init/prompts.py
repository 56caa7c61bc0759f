"""Asking for what the flags, the environment and an earlier run did not give.

On a terminal each missing value is asked for (a secret without echo); otherwise nothing is
asked and every missing value is reported at once, with the flag that gives it.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from typing import TextIO

from bridge.settings import SettingsError


class Prompter:
    def __init__(
        self,
        interactive: bool,
        *,
        read_line: Callable[[str], str] = input,
        read_secret: Callable[[str], str] = getpass.getpass,
        out: TextIO | None = None,
    ) -> None:
        self.interactive = interactive
        self._read_line = read_line
        self._read_secret = read_secret
        self._out = out
        self.missing: list[str] = []

    def text(
        self, label: str, value: str | None, *, flag: str, default: str | None = None
    ) -> str | None:
        if value:
            return value
        if not self.interactive:
            if default is None:
                self.missing.append(flag)
            return default
        shown = f" [{default}]" if default else ""
        while True:
            answer = self._read_line(f"{label}{shown}: ").strip()
            if answer or default:
                return answer or default
            self._say(f"  {label} is needed")

    def secret(self, label: str, value: str | None, *, flag: str) -> str | None:
        """Read without echo; the answer is never shown."""
        if value:
            return value
        if not self.interactive:
            self.missing.append(flag)
            return None
        while True:
            answer = self._read_secret(f"{label} (not shown): ").strip()
            if answer:
                return answer
            self._say(f"  {label} is needed")

    def choice(
        self, label: str, value: str | None, choices: Sequence[str], *, flag: str, default: str
    ) -> str:
        if value:
            return value
        if not self.interactive:
            return default
        while True:
            answer = self._read_line(f"{label} ({'/'.join(choices)}) [{default}]: ").strip()
            if not answer:
                return default
            if answer in choices:
                return answer
            self._say(f"  answer one of: {', '.join(choices)}")

    def confirm(self, question: str, *, default: bool) -> bool:
        if not self.interactive:
            return default
        hint = "Y/n" if default else "y/N"
        while True:
            answer = self._read_line(f"{question} [{hint}]: ").strip().lower()
            if not answer:
                return default
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")
            self._say("  answer y or n")

    def check_complete(self) -> None:
        """Raise a SettingsError naming every value a non-interactive run lacks."""
        if self.missing:
            raise SettingsError(
                "jit-bridge init needs "
                + ", ".join(dict.fromkeys(self.missing))
                + " (or run it on a terminal to be asked)"
            )

    def _say(self, text: str) -> None:
        print(text, file=self._out)
