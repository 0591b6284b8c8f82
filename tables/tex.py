"""Text into LaTeX: the characters the tables print that LaTeX reads as commands, or cannot typeset as they are."""

from __future__ import annotations

ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "×": r"$\times$", "±": r"$\pm$",
           "—": "---", "−": "$-$"}


def tex(s: str) -> str:
    """``s`` with every character of ``ESCAPES`` replaced, ready for a tabular cell."""
    return "".join(ESCAPES.get(ch, ch) for ch in s)


__all__ = ["ESCAPES", "tex"]
