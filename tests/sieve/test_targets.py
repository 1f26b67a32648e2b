"""Which folders a Sieve script can file into, read from the parsed script (what IMAP NOTIFY's
`inboxes` covers besides INBOX, RFC 5465 §6)."""

from __future__ import annotations

from mailsuite.sieve.script import parse
from mailsuite.sieve.targets import fileinto_folders


def test_every_branch_counts_and_inbox_is_spelled_inbox():
    script = parse(
        'require ["fileinto", "mailbox", "copy"];\n'
        'if header :contains "List-Id" "dev" { fileinto :create "Lists/dev"; stop; }\n'
        'elsif address :is "from" "boss@example.test" { fileinto :copy "Boss"; }\n'
        'else { if size :over 1M { fileinto "Big"; } }\n'
        'fileinto "inbox";\n'
        "keep;\n"
    )
    assert fileinto_folders(script) == {"Lists/dev", "Boss", "Big", "INBOX"}


def test_no_script_and_a_script_without_fileinto_file_nowhere():
    assert fileinto_folders(None) == frozenset()
    assert fileinto_folders(parse('if header :is "x" "y" { discard; }\nkeep;\n')) == frozenset()


def test_a_name_made_of_variables_is_unknown_but_a_literal_dollar_is_a_name():
    with_variables = parse(
        'require ["fileinto", "variables"];\n'
        'set "box" "Later";\nfileinto "${box}";\nfileinto "Fixed";\n'
    )
    assert fileinto_folders(with_variables) == {"Fixed"}
    # Without the variables extension "${box}" is just text (RFC 5229 §3).
    assert fileinto_folders(parse('require "fileinto";\nfileinto "${box}";\n')) == {"${box}"}


def test_included_scripts_count_too():
    texts = {"lists": 'require "fileinto";\nfileinto "Lists";\n'}
    script = parse(
        'require ["include", "fileinto"];\ninclude :personal "lists";\nfileinto "Main";\n',
        includes=lambda location, name: texts.get(name),
    )
    assert fileinto_folders(script) == {"Lists", "Main"}
