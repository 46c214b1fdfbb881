"""The built-in renderers, registered through the same hook as a plugin's."""

from __future__ import annotations

from gradhealth.hookspecs import hookimpl
from gradhealth.render import github, json, junit, markdown, table
from gradhealth.render.registry import Renderer

__all__ = ["gradhealth_register_renderers"]


@hookimpl
def gradhealth_register_renderers() -> dict[str, Renderer]:
    """Register ``table``, ``json``, ``markdown``, ``junit`` and ``github``."""
    return {
        "table": table.render,
        "json": json.render,
        "markdown": markdown.render,
        "junit": junit.render,
        "github": github.render,
    }
