"""`.env.example` and the README's settings table, generated from the settings' declarations:

    python -m bot.settings --env-example | --markdown | --write
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from bot.settings import SETTINGS

# ---- .env.example and the README table, generated from SETTINGS -----------------------------

ROOT = Path(__file__).resolve().parents[2]  # the source checkout holding .env.example and README.md
REGENERATE = "python -m bot.settings --write"
WIDTH = 100  # of .env.example's lines
ENV_EXAMPLE_HEAD = f"""\
# Darkroom settings. Copy to .env (or set them in the environment; the environment wins).
# Nothing is required: with neither TELEGRAM_BOT_TOKEN nor the WECHAT_* trio, `darkroom run` serves
# only the on-device page on this machine.
# Generated from bot/settings/__init__.py (`{REGENERATE}`): change a setting there, not here.
"""


def env_example() -> str:
    """`.env.example`: every key under its group's heading, with its doc as a comment."""
    lines = ENV_EXAMPLE_HEAD.splitlines()
    group = None
    for s in SETTINGS:
        if s.group != group:
            group = s.group
            lines += ["", f"# ---- {group.title} ".ljust(WIDTH, "-"), *_comment(group.note)]
        text = _sentence(s.doc)
        if s.blank_means:
            text += f" Empty: {s.blank_means}."
        if s.note:
            text += " " + s.note
        if s.secret:
            text += " Never logged."
        lines += _comment(text)
        value = "" if s.blank_means else s.kind.write(s.default)  # empty: worked out at start-up
        lines.append(f"# {s.env}={s.example}" if s.example else f"{s.env}={value}")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The README's settings table: one row per key."""
    rows = ["| Key | Default | Meaning |", "|---|---|---|"]
    for s in SETTINGS:
        value = s.kind.write(s.default)
        default = s.blank_means or (f"`{value}`" if value else "–")
        meaning = s.doc + ("; never logged" if s.secret else "")
        rows.append(f"| `{s.env}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def readme_with_table(readme: str) -> str:
    """``readme`` with the first table of its "## Settings" section replaced by `markdown_table`
    (the prose around it is kept)."""
    head, heading, section = readme.partition("\n## Settings\n")
    if not heading:
        raise ValueError('README.md has no "## Settings" section')
    lines = section.split("\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(first, len(lines)) if not lines[i].startswith("|"))
    return head + heading + "\n".join(lines[:first] + markdown_table().splitlines() + lines[end:])


def _sentence(doc: str) -> str:
    """A table cell as a comment sentence: capitalised, unless it starts with code."""
    if not doc:
        return ""
    text = doc if doc.startswith("`") else doc[0].upper() + doc[1:]
    return text if text.endswith(".") else text + "."


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False) if text else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.settings", description="Print or rewrite what is generated from the settings table."
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--env-example", action="store_true", help="print .env.example")
    what.add_argument("--markdown", action="store_true", help="print the README's settings table")
    what.add_argument("--write", action="store_true", help="rewrite .env.example and the README's table in this checkout")
    args = parser.parse_args(argv)
    if args.env_example:
        sys.stdout.write(env_example())
    elif args.markdown:
        sys.stdout.write(markdown_table())
    else:
        (ROOT / ".env.example").write_text(env_example())
        readme = ROOT / "README.md"
        readme.write_text(readme_with_table(readme.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
