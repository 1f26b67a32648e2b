"""The parser and the upload-time checks: RFC 5228 §8 syntax, §2.10.5 / §3.2 require, and the
extensions' argument rules.  Every refusal carries the line it is about."""

from __future__ import annotations

import pytest

from mailsuite.sieve import EXTENSIONS, SieveError, parse


def error(text: str) -> SieveError:
    with pytest.raises(SieveError) as e:
        parse(text)
    return e.value


def test_error_carries_the_line_rfc5804_putscript_needs_it():
    e = error('require "fileinto";\n\nif true {\n  fileinto;\n}\n')
    assert e.line == 4
    assert str(e) == f"line 4: {e.message}"


@pytest.mark.parametrize(
    "text,line,words",
    [
        ('require "nosuch";', 1, "unsupported extension"),
        ('keep;\nrequire "fileinto";', 2, "before any other command"),
        ('fileinto "x";', 1, 'require "fileinto"'),
        ('require "fileinto";\nfileinto :copy "x";', 2, 'require "copy"'),
        ('require "fileinto";\nfileinto :create "x";', 2, 'require "mailbox"'),
        ('if header :regex "a" "b" {}', 1, 'require "regex"'),
        ('if header :count "ge" "a" "1" {}', 1, 'require "relational"'),
        ('if address :detail "to" "x" {}', 1, 'require "subaddress"'),
        ('if header :index 1 "a" "b" {}', 1, 'require "index"'),
        ('vacation "x";', 1, 'require "vacation"'),
        ('require "vacation";\nvacation :seconds 5 "x";', 2, 'require "vacation-seconds"'),
        ('if header :comparator "i;ascii-numeric" "a" "1" {}', 1, "comparator-i;ascii-numeric"),
        ('if header :comparator "i;nosuch" "a" "1" {}', 1, "unknown comparator"),
        ("frobnicate;", 1, "unknown command"),
        ("if frob {}", 1, "unknown test"),
        ("keep", 1, "unexpected end"),
        ("if true { keep; ", 1, "missing '}'"),
        ("}", 1, "unexpected '}'"),
        ('"string";', 1, "expected 'identifier'"),
        ("else { keep; }", 1, "without a preceding if"),
        ("if true keep;", 1, "takes no test"),
        ('if true { keep; } "x"', 1, "expected 'identifier'"),
        ("if true;", 1, "needs a block"),
        ("keep { }", 1, "takes no block"),
        ('require "fileinto" { }', 1, "takes no block"),
        ('if true { require "fileinto"; }', 1, "before any other command"),
        ("if not (true, false) {}", 1, "exactly one test"),
        ("if allof {}", 1, "needs a test list"),
        ("stop 1;", 1, "takes 0 argument"),
        ('if header :is :contains "a" "b" {}', 1, "cannot be combined"),
        ('if header :is :is "a" "b" {}', 1, "given twice"),
        ('if header "a" :is "b" {}', 1, "after positional"),
        ("if size 100 {}", 1, ":over or :under"),
        ('if size :over "big" {}', 1, "wants a number"),
        ('redirect ["a@b", "c@d"];', 1, "wants a string"),
        ('if header :value "zz" "a" "b" {}', 1, "relational"),
        ('require "date";\nif date "date" "fortnight" "1" {}', 2, "unknown date part"),
        ('require "variables";\nset "1abc" "x";', 2, "invalid variable name"),
        ('require "regex";\nif header :regex "s" "(a+" {}', 2, "regular expression"),
        ('require "regex";\nif header :regex "s" "(x{200}){200}" {}', 2, "too complex"),
        ('require "regex";\nif header :regex "s" "[a" {}', 2, "regular expression"),
        ('require "editheader";\naddheader "bad name" "x";', 2, "header field name"),
        ('require "include";\ninclude "../etc/passwd";', 2, "script name"),
        ('require "envelope";\nif envelope "helo" "x" {}', 2, "envelope part"),
        ('if header :last "a" "b" {}', 1, 'require "index"'),
        ('require "index";\nif header :last "a" "b" {}', 2, ":last needs :index"),
        ('"unterminated', 1, "unterminated string"),
        ("/* open comment", 1, "unterminated comment"),
        ("keep;\n\n  $", 3, "unexpected character"),
        (
            'require ["encoded-character", "fileinto"];\nfileinto "${unicode:D800}";',
            2,
            "unicode",
        ),
        ("if size :over 99999999999999999999G {}", 1, "too large"),
    ],
)
def test_refused_at_upload(text, line, words):
    e = error(text)
    assert e.line == line, str(e)
    assert words.lower() in str(e).lower(), str(e)


def test_every_capability_can_be_required_together():
    script = parse(f"require {list(EXTENSIONS)!r};".replace("'", '"'))
    assert script.required == frozenset(EXTENSIONS)


def test_built_in_comparators_may_be_required_but_are_not_advertised():
    parse('require ["comparator-i;octet", "comparator-i;ascii-casemap"];')
    assert "comparator-i;octet" not in EXTENSIONS


def test_multiline_strings_and_dot_stuffing_rfc5228_2_4_2():
    s = parse('require "variables";\nset "x" text: # comment\nline one\n..dotted\n.\n;\nkeep;')
    assert s.commands[1].positional[1].text == "line one\r\n.dotted\r\n"
    assert s.commands[2].line == 7


def test_quoted_string_escapes():
    s = parse('require "variables";\nset "x" "a\\"b\\\\c\\d";')
    assert s.commands[1].positional[1].text == 'a"b\\cd'


def test_numbers_with_quantifiers():
    s = parse("if size :over 2K { discard; }\nif size :under 1M {}\nif size :over 1G {}")
    assert [c.tests[0].positional[0] for c in s.commands] == [2048, 1 << 20, 1 << 30]


def test_encoded_characters_are_decoded_only_when_required_rfc5228_2_4_2_4():
    s = parse(
        'require ["encoded-character", "variables"];\nset "x" "${hex: 41 42}${unicode:263a}";'
    )
    assert s.commands[1].positional[1].text == "AB\u263a"
    s = parse('require "variables";\nset "x" "${hex:41}";')
    assert s.commands[1].positional[1].text == "${hex:41}"
    s = parse('require ["encoded-character", "variables"];\nset "x" "${hex:4}";')
    assert s.commands[1].positional[1].text == "${hex:4}"  # not the syntax: left as written


def test_comments_of_both_kinds():
    s = parse("# hash\n/* bracketed\n over lines */ keep; # trailing\ndiscard;")
    assert [(c.name, c.line) for c in s.commands] == [("keep", 3), ("discard", 4)]


def test_nesting_is_capped():
    deep = "if true {" * 40 + "}" * 40
    assert "too deep" in str(error(deep))


def test_include_resolver_parses_included_scripts_and_refuses_loops():
    scripts = {
        ("personal", "a"): 'require "include";\ninclude "b";',
        ("personal", "b"): 'require "include";\ninclude "a";',
        ("global", "g"): "keep;",
    }
    resolve = lambda loc, name: scripts.get((loc, name))  # noqa: E731
    with pytest.raises(SieveError, match="include loop"):
        parse('require "include";\ninclude "a";', includes=resolve)
    s = parse(
        'require "include";\ninclude :global "g";\ninclude :optional "none";', includes=resolve
    )
    assert s.included[("global", "g")].commands[0].name == "keep"
    assert s.included[("personal", "none")] is None


def test_error_inside_an_included_script_names_it():
    def resolve(location, name):
        return "nonsense here;"

    with pytest.raises(SieveError, match="in included script 'bad'") as e:
        parse('require "include";\n\ninclude "bad";', includes=resolve)
    assert e.value.line == 3


def test_no_require_needed_for_core():
    parse(
        'if anyof (header :contains "subject" "x", address :all :is "from" "a@b",\n'
        '  exists "x", size :under 10, not true, allof (true, false)) { keep; }\n'
        'elsif header :matches ["to", "cc"] ["*a*", "b?"] { discard; }\n'
        'else { redirect "x@example.test"; stop; }\n'
    )
