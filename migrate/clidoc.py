"""Renders docs/cli.md from the click commands themselves, so the reference cannot drift.

``python -m migrate.clidoc > docs/cli.md`` (or ``make docs``); a test fails when the file is stale.
"""

from __future__ import annotations

import click

from migrate.cli import main


def render() -> str:
    lines = ["# CLI reference", "", "Generated from the code by `make docs`; do not edit by hand.", ""]
    settings = {"max_content_width": 100, "terminal_width": 100, "help_option_names": ["-h", "--help"]}
    context = click.Context(main, info_name="regmig", **settings)
    lines += ["## regmig", "", "```text", main.get_help(context), "```", ""]
    for name, command in sorted(main.commands.items()):
        sub = click.Context(command, info_name=name, parent=context, **settings)
        lines += [f"## regmig {name}", "", "```text", command.get_help(sub), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
