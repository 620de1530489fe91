"""Prompt templates, stored as text files beside this module.

Templates use ``$name`` placeholders (:class:`string.Template`), so program code full of
braces needs no escaping. Section headers (``## Goal``, ``## Parent program`` ...) are part
of the contract with :mod:`aster_nb.llm.promptparse`, which the offline model reads them with.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template


@cache
def template(name: str) -> Template:
    """The template ``<name>.txt``."""
    try:
        text = resources.files(__package__).joinpath(f"{name}.txt").read_text()
    except FileNotFoundError as e:
        raise KeyError(f"no prompt template {name!r}") from e
    return Template(text)


def render(name: str, **fields: object) -> str:
    """Fill template ``name``; every placeholder must be given."""
    return template(name).substitute({k: str(v) for k, v in fields.items()})
