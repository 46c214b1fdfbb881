"""Renderers: turn Reports into text, tables and files. They read the Report only, never the model."""
