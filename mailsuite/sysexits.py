"""The exit statuses of the `mailsuite` command (BSD sysexits.h), in one table.

Every subcommand, the families that packages add included, exits with one of these, so that a
script or a mail transfer agent calling `mailsuite deliver` can tell a typo from a full disk.
docs/cli-reference.md lists the table (docs/gen_cli_reference.py reads `MEANINGS`).
"""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 64  # the command line is wrong: unknown command, missing or malformed argument
EX_DATAERR = 65  # the input is wrong: a bad address, a weak password, a file that is no mbox
EX_NOINPUT = 66  # an input file does not exist or cannot be read
EX_NOUSER = 67  # no such user, alias or local domain
EX_UNAVAILABLE = 69  # a service the command needs is not there (the server is not running)
EX_SOFTWARE = 70  # an internal error: a bug, please report it
EX_CANTCREAT = 73  # cannot create: it exists already, or the mailbox or folder is not there
EX_IOERR = 74  # reading or writing a file failed
EX_TEMPFAIL = 75  # a temporary failure: try again later (over quota, remote server down)
EX_NOPERM = 77  # not allowed: a wrong password, a permission denied, larger than the quota
EX_CONFIG = 78  # the configuration is wrong

# (status, sysexits name, what it means here), in numeric order, for the reference page.
MEANINGS: tuple[tuple[int, str, str], ...] = (
    (EX_OK, "EX_OK", "done"),
    (1, "", "`dns --check`: some records are missing or wrong"),
    (EX_USAGE, "EX_USAGE", "the command line is wrong (unknown command, missing or bad argument)"),
    (
        EX_DATAERR,
        "EX_DATAERR",
        "the input is wrong: a malformed address or domain, a weak password, a file that is "
        "not an mbox, a bad folder name, nothing that could be imported",
    ),
    (EX_NOINPUT, "EX_NOINPUT", "an input file does not exist or cannot be read"),
    (EX_NOUSER, "EX_NOUSER", "no such user, alias, domain, queue entry or folder"),
    (
        EX_UNAVAILABLE,
        "EX_UNAVAILABLE",
        "a service the command needs is not available (e.g. the server is not running)",
    ),
    (EX_SOFTWARE, "EX_SOFTWARE", "an internal error (a bug: please report it)"),
    (
        EX_CANTCREAT,
        "EX_CANTCREAT",
        "cannot create: the user, domain or file exists already, a mailbox cannot be made, "
        "or `deliver --folder` names a folder the mailbox does not have",
    ),
    (EX_IOERR, "EX_IOERR", "reading or writing a file failed"),
    (
        EX_TEMPFAIL,
        "EX_TEMPFAIL",
        "a temporary failure, try again later (over quota, a remote server unreachable)",
    ),
    (
        EX_NOPERM,
        "EX_NOPERM",
        "not allowed: a remote server refused the password, a file's permissions, a message "
        "larger than the whole quota",
    ),
    (
        EX_CONFIG,
        "EX_CONFIG",
        "the configuration is wrong, or the process may not run as it was started",
    ),
    (130, "", "interrupted (Ctrl-C)"),
    (141, "", "the output was closed early (`mailsuite ... | head`): nothing is printed"),
)
