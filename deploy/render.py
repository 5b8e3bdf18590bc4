"""Render the Jinja2 templates in templates/ (StrictUndefined: a missing variable is an error)."""

from __future__ import annotations

import shlex
from functools import lru_cache

import jinja2

from deploy.hostkeys import REPO_ROOT

TEMPLATES = REPO_ROOT / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The shared environment; `|shq` quotes a value for bash."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["shq"] = lambda value: shlex.quote(str(value))
    return env


def render(name: str, **context) -> str:
    """The text of templates/`name` rendered with `context`."""
    return environment().get_template(name).render(**context)
