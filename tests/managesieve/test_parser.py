"""The ManageSieve framing without a socket (RFC 5804 §4): tokens, quoted strings, both literal
forms, and the bounds that keep a client from making the server hold or run what it should
not."""

from __future__ import annotations

from mailsuite.managesieve import response as R
from mailsuite.managesieve.parser import (
    Atom,
    CommandReader,
    Line,
    LiteralTooLarge,
    Malformed,
)


def frames(data: bytes, *, max_line=200, cap=100, skip=False, chunk=None) -> list:
    reader = CommandReader(max_line, cap, skip_oversized=skip)
    out = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        reader.feed(piece)
        while (frame := reader.next()) is not None:
            out.append(frame)
    return out


def test_atoms_quoted_strings_and_literals():
    data = b'PUTSCRIPT "a \\"b\\" \\\\" {4+}\r\nx\r\ny\r\nnoop\r\n'
    assert frames(data) == [
        Line((Atom("PUTSCRIPT"), b'a "b" \\', b"x\r\ny")),
        Line((Atom("noop"),)),
    ]
    assert frames(data)[1].name == "NOOP"


def test_the_same_commands_byte_by_byte():
    data = b'HAVESPACE "s" 100\r\nPUTSCRIPT "s" {3}\r\nabc\r\nLOGOUT\n'
    assert frames(data, chunk=1) == frames(data)
    assert [f.name for f in frames(data)] == ["HAVESPACE", "PUTSCRIPT", "LOGOUT"]


def test_a_literal_in_the_middle_of_a_command():
    assert frames(b"RENAMESCRIPT {1+}\r\na {1+}\r\nb\r\n") == [
        Line((Atom("RENAMESCRIPT"), b"a", b"b"))
    ]


def test_syntax_errors_are_reported_once_per_command():
    assert frames(b'GETSCRIPT "x\r\nNOOP\r\n') == [
        Malformed("Unterminated quoted string.", "GETSCRIPT"),
        Line((Atom("NOOP"),)),
    ]
    assert frames(b'GETSCRIPT "x"y\r\n') == [
        Malformed("Missing space between arguments.", "GETSCRIPT")
    ]
    assert frames(b"GETSCRIPT (x)\r\n")[0].reason == "Invalid character in command."
    assert frames(b"GETSCRIPT {x}\r\n")[0].reason == "Invalid literal."


def test_a_broken_command_still_consumes_its_literal():
    # A bad first line that announces a literal: the literal is data, never commands.
    assert frames(b'PUTSCRIPT "a\\q" {8+}\r\nLOGOUT\r\n\r\nNOOP\r\n') == [
        Malformed("Invalid escape in quoted string.", "PUTSCRIPT"),
        Line((Atom("NOOP"),)),
    ]


def test_oversized_literal_before_login_is_reported_at_once():
    reader = CommandReader(200, 100)
    reader.feed(b'AUTHENTICATE "PLAIN" {5000+}\r\n' + b"x" * 10)
    assert reader.next() == LiteralTooLarge(5000, 100, "AUTHENTICATE")
    assert reader.next() is None
    assert reader.pending == 0


def test_oversized_literal_after_login_is_read_past_then_reported():
    data = b'PUTSCRIPT "s" {500+}\r\n' + b"LOGOUT\r\n" * 62 + b"xxxx\r\nNOOP\r\n"
    got = frames(data, skip=True, chunk=7)
    assert got == [LiteralTooLarge(500, 100, "PUTSCRIPT"), Line((Atom("NOOP"),))]


def test_overlong_line_is_dropped_without_being_held():
    reader = CommandReader(100, 100)
    for _ in range(100):
        reader.feed(b"x" * 1000)
        assert reader.next() is None
        assert reader.pending <= 100
    reader.feed(b"\r\nNOOP\r\n")
    assert reader.next() == Malformed("Command line too long.", "")
    assert reader.next() == Line((Atom("NOOP"),))


def test_overlong_line_announcing_a_literal_still_skips_it():
    data = b"PUTSCRIPT " + b"y" * 500 + b" {6+}\r\nLOGOUT\r\nNOOP\r\n"
    assert frames(data, chunk=64) == [
        Malformed("Command line too long.", ""),
        Line((Atom("NOOP"),)),
    ]


def test_too_many_arguments():
    assert frames(b"NOOP" + b" a" * 20 + b"\r\n")[0].reason == "Too many arguments."


def test_discard_forgets_a_command_in_progress():
    reader = CommandReader(100, 100)
    reader.feed(b'PUTSCRIPT "a" {10+}\r\nabc')
    assert reader.next() is None and reader.in_command
    assert reader.discard() == 3
    assert not reader.in_command
    reader.feed(b"NOOP\r\n")
    assert reader.next() == Line((Atom("NOOP"),))


def test_strings_in_responses_are_quoted_or_literals():
    assert R.string("plain") == b'"plain"'
    assert R.string('a"b\\c') == b'"a\\"b\\\\c"'
    assert R.string("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert R.string("x" * 1025).startswith(b"{1025}\r\n")
    assert R.no("line 3: bad", R.QUOTA_MAXSIZE) == b'NO (QUOTA/MAXSIZE) "line 3: bad"\r\n'
    assert R.tagged_ok(b"t", "Done") == b'OK (TAG "t") "Done"\r\n'
