"""Make untrusted text (file, layer and model names; error messages that quote them) safe to print in each format.

Names come from files and folders, so they may hold anything: terminal escape sequences (ANSI colours, OSC window
titles and hyperlinks), carriage returns that overwrite a line, newlines that inject lines into a Markdown list or a
CI summary, characters XML 1.0 cannot hold, Markdown table separators and raw HTML. Standard library only: the CLI's
error lines use :func:`printable` too.

>>> printable("ckpt\\x1b]0;owned\\x07.pt")
'ckpt\\\\x1b]0;owned\\\\x07.pt'
>>> markdown_text("a|b<script>")
'a\\\\|b&lt;script&gt;'
"""

from __future__ import annotations

import re

__all__ = ["markdown_text", "printable", "xml_text"]

# C0 controls, DEL and C1 controls (ESC starts ANSI/OSC sequences, CSI is U+009B, \r overwrites the line), the
# Unicode line and paragraph separators, the bidirectional overrides that reorder what a reader sees, lone
# surrogates (undecodable bytes of a file name, which no UTF-8 stream can write) and the non-characters XML refuses.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff\ufffe\uffff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# What Markdown (GitHub-flavoured, with inline HTML) would interpret: emphasis, code, links, table cells, escapes.
_MARKDOWN_SPECIAL = re.compile(r"([\\`\[\]|])")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep: str = "") -> str:
    """``text`` with every control character written out (``\\x1b``, ``\\n``, ``\\u202e``), so it prints as one
    line that cannot move the cursor, recolour or retitle a terminal, or reorder itself; characters in ``keep`` are
    left for the caller's own escaping."""
    return _UNPRINTABLE.sub(lambda m: m.group() if m.group() in keep else _visible(m), text)


def markdown_text(text: str) -> str:
    """``text`` as one line of literal Markdown text: controls written out, the syntax that could end a table cell,
    make a link or code span or escape our own separators (``|``, ``[``, ``]``, backticks, backslashes)
    backslash-escaped, and ``<``, ``>`` and ``&`` as entities, so no raw HTML gets through."""
    text = printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def xml_text(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot hold (and every other control) written out; the XML writer
    escapes ``<``, ``&``, ``>`` and quotes."""
    return printable(text)
