"""Write docs/configuration.md from mailsuite/config.py, so the reference cannot drift.

Each section is a dataclass in config.py; each key's description is the comment above or beside
its field there.  Run `python docs/gen_config_reference.py` after changing config.py; a test
checks that the committed file matches.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import types
import typing
from pathlib import Path

from mailsuite import config

OUT = Path(__file__).resolve().parent / "configuration.md"
FIELD_RE = re.compile(r"^\s{4}(\w+):\s*[^=]+?(?:=\s*(.*?))?\s*(?:#\s*(.*))?$")

HEADER = """# Configuration reference

mailsuite reads one TOML file: `--config PATH`, else `$MAILSUITE_CONFIG`, else
`conf/mailsuite.toml` in the current folder if it exists, else the embedded default
(`mailsuite/default.toml`: loopback only, unprivileged ports, a self-signed certificate).
`mailsuite init DIR` writes a copy of that default into `DIR`.

Every path in the file, given or left at its default (`data_dir`, `[tls] cert` and `key`,
`[log] file`, `[relay] smarthost` `ca_file`), is relative to the file's folder; for the
embedded default, to `$XDG_DATA_HOME/mailsuite` (`~/.local/share/mailsuite`), so that its data
and certificate land there wherever the server is started.

An unknown key, a wrong type or an unusable value stops the server before anything starts,
with one line naming the key. `mailsuite check` validates a file, loads the certificate and key
as `serve` does, checks that the log can be written, and lists the listeners it would open.

This page is generated from the comments of the dataclasses in `mailsuite/config.py` by
`docs/gen_config_reference.py`; a test checks that it is current.
"""


def field_docs(cls) -> dict[str, tuple[str, str]]:
    """name -> (default as written in the source, description from its comments)."""
    lines = inspect.getsource(cls).splitlines()
    docs: dict[str, tuple[str, str]] = {}
    pending: list[str] = []
    shared = ""  # a comment above a run of adjacent fields describes all of them
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("# ").strip())
            continue
        m = FIELD_RE.match(line)
        if m and not stripped.startswith(("def ", "@", '"""')):
            name, default, trailing = m.groups()
            if pending:
                shared = " ".join(pending)
                own = shared
            else:
                own = ""
            # A field's own comment (above it, or beside it) is its text; only a field with
            # neither takes the comment above the run of fields it belongs to.
            text = " ".join(t for t in (own, trailing or "") if t) or shared
            docs[name] = ((default or "").strip(), text)
        else:
            shared = ""
        pending = []
    return docs


def default_repr(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, Path):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(default_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{}"
            if not value
            else "{" + ", ".join(f"{k} = {default_repr(v)}" for k, v in value.items()) + "}"
        )
    return str(value)


def optional_table(cls, name: str):
    """The dataclass of a field typed `Table | None` (a table that is off when absent)."""
    hint = typing.get_type_hints(cls).get(name)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def section(title: str, cls) -> str:
    docs = field_docs(cls)
    instance = cls()
    out = [f"\n## {title}\n"]
    if cls.__doc__ and cls is not config.Config and not cls.__doc__.startswith(cls.__name__ + "("):
        out.append(inspect.cleandoc(cls.__doc__) + "\n")
    out.append("| key | default | meaning |")
    out.append("|---|---|---|")
    for f in dataclasses.fields(cls):
        if f.name == "path" or dataclasses.is_dataclass(
            f.type if not isinstance(f.type, str) else None
        ):
            continue
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value) or optional_table(cls, f.name):
            continue
        text = docs.get(f.name, ("", ""))[1].replace("|", "\\|")
        out.append(f"| `{f.name}` | `{default_repr(value)}` | {text} |")
    return "\n".join(out) + "\n"


def render() -> str:
    parts = [HEADER, section("Top level", config.Config)]
    for f in dataclasses.fields(config.Config):
        value = getattr(config.Config(), f.name)
        if dataclasses.is_dataclass(value):
            parts.append(section(f"[{f.name}]", type(value)))
        elif table := optional_table(config.Config, f.name):
            parts.append(section(f"[{f.name}]", table))
    return "".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        return 0 if OUT.read_text() == text else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
