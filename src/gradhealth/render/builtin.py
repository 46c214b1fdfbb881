"""The built-in renderers, registered through the same hook as a plugin's."""

from __future__ import annotations

from gradhealth.hookspecs import hookimpl
from gradhealth.render import github, html, json, junit, markdown, table
from gradhealth.render.registry import Renderer

__all__ = ["gradhealth_register_renderers"]


@hookimpl
def gradhealth_register_renderers() -> dict[str, Renderer]:
    """Register ``table``, ``json``, ``markdown``, ``junit``, ``github`` and ``html``."""
    return {
        "table": table.render,
        "json": json.render,
        "markdown": markdown.render,
        "junit": junit.render,
        "github": github.render,
        "html": html.render,
    }
