"""Renderers: turn a report model into text, JSON, JUnit, Gradescope, Markdown or CSV."""
