"""The export's progress lines, one place so that every step reads alike in a log."""

from __future__ import annotations


def say(message: str) -> None:
    print(f"[export] {message}", flush=True)
