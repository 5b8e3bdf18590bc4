"""The one Jinja environment for remote scripts (deploy, bench, service, build, setup): templates/,
StrictUndefined (a missing variable is an error), every value through `|shq`."""

from __future__ import annotations

import shlex
from functools import lru_cache

import jinja2

from deploy.paths import TEMPLATES


def shell_quote(value) -> str:
    """One bash word, whatever `value` holds (quotes, $(…), newlines)."""
    return shlex.quote(str(value))


def shell_comment(value) -> str:
    """`value` on one line, for a `# …` comment (a newline would end the comment)."""
    return " ".join(str(value).split())


def add_shell_filters(env: jinja2.Environment) -> jinja2.Environment:
    """The filters every script template uses: `|shq` for every value, `|comment` in comments."""
    env.filters["shq"] = shell_quote
    env.filters["comment"] = shell_comment
    return env


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
        # bash's ${#array[@]} would open a Jinja comment: use {## ... ##} for those. The build
        # scripts keep their layout with `{%+ … +%}` where a tag's newline must stay.
        comment_start_string="{##",
        comment_end_string="##}",
    )
    return add_shell_filters(env)


def render(name: str, **context) -> str:
    """The text of templates/`name` rendered with `context`."""
    return environment().get_template(name).render(**context)
