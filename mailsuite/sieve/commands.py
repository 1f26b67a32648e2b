"""What each Sieve command and test may take, and the upload-time checks RFC 5228 §2.10.5 and
§8.2 ask for: unknown commands, extensions used without `require`, wrong argument types,
unknown comparators, malformed relational operators, date parts and regular expressions.

The checker fills each node's `tags` (tag name -> value, True for a flag) and `positional`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailsuite.sieve.grammar import Argument, Command, SieveError, StringValue, Test
from mailsuite.sieve.regex import compile_regex
from mailsuite.sieve.strings import decode_encoded, has_variables, valid_variable_name

# The capabilities this implementation has, as ManageSieve's SIEVE capability lists them.
EXTENSIONS: tuple[str, ...] = (
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "encoded-character",
    "imap4flags",
    "body",
    "variables",
    "relational",
    "comparator-i;ascii-numeric",
    "subaddress",
    "copy",
    "date",
    "index",
    "editheader",
    "vacation",
    "vacation-seconds",
    "duplicate",
    "mailbox",
    "special-use",
    "regex",
    "include",
)

# RFC 5228 §2.7.3: these two are always there; a script may still name them in require.
BUILT_IN = ("comparator-i;octet", "comparator-i;ascii-casemap")

COMPARATORS = {
    "i;octet": None,
    "i;ascii-casemap": None,
    "i;ascii-numeric": "comparator-i;ascii-numeric",
}
RELATIONAL_OPERATORS = ("gt", "ge", "lt", "le", "eq", "ne")
DATE_PARTS = (
    "year",
    "month",
    "day",
    "date",
    "julian",
    "hour",
    "minute",
    "second",
    "time",
    "iso8601",
    "std11",
    "zone",
    "weekday",
)

S, L, N = "string", "list", "number"


@dataclass(frozen=True)
class Tag:
    value: str | None = None  # None: a flag; else the type of the argument it takes
    extension: str | None = None
    group: str | None = None  # tags of one group exclude each other


MATCH = {
    "is": Tag(group="match"),
    "contains": Tag(group="match"),
    "matches": Tag(group="match"),
    "regex": Tag(extension="regex", group="match"),
    "value": Tag(S, "relational", "match"),
    "count": Tag(S, "relational", "match"),
    "comparator": Tag(S),
}
ADDRESS_PART = {
    "all": Tag(group="part"),
    "localpart": Tag(group="part"),
    "domain": Tag(group="part"),
    "user": Tag(extension="subaddress", group="part"),
    "detail": Tag(extension="subaddress", group="part"),
}
INDEX = {"index": Tag(N, "index"), "last": Tag(None, "index")}


@dataclass(frozen=True)
class Spec:
    positional: tuple[str, ...] = ()
    tags: dict = field(default_factory=dict)
    extension: str | None = None
    optional: int = 0  # how many positional arguments may be left out
    optional_first: bool = False  # the optional ones lead (setflag's variable name)
    tests: str = "none"  # "none", "one", "list"
    block: bool = False


COMMANDS: dict[str, Spec] = {
    "require": Spec((L,)),
    "if": Spec(tests="one", block=True),
    "elsif": Spec(tests="one", block=True),
    "else": Spec(block=True),
    "stop": Spec(),
    "keep": Spec(tags={"flags": Tag(L, "imap4flags")}),
    "discard": Spec(),
    "redirect": Spec((S,), {"copy": Tag(None, "copy")}),
    "fileinto": Spec(
        (S,),
        {
            "copy": Tag(None, "copy"),
            "flags": Tag(L, "imap4flags"),
            "create": Tag(None, "mailbox"),
            "specialuse": Tag(S, "special-use"),
        },
        "fileinto",
    ),
    "reject": Spec((S,), extension="reject"),
    "ereject": Spec((S,), extension="ereject"),
    "vacation": Spec(
        (S,),
        {
            "days": Tag(N, None, "period"),
            "seconds": Tag(N, "vacation-seconds", "period"),
            "subject": Tag(S),
            "from": Tag(S),
            "addresses": Tag(L),
            "mime": Tag(),
            "handle": Tag(S),
        },
        "vacation",
    ),
    "setflag": Spec((S, L), extension="imap4flags", optional=1, optional_first=True),
    "addflag": Spec((S, L), extension="imap4flags", optional=1, optional_first=True),
    "removeflag": Spec((S, L), extension="imap4flags", optional=1, optional_first=True),
    "set": Spec(
        (S, S),
        {
            name: Tag(None, ext)
            for name, ext in (
                ("lower", None),
                ("upper", None),
                ("lowerfirst", None),
                ("upperfirst", None),
                ("quotewildcard", None),
                ("quoteregex", "regex"),
                ("length", None),
            )
        },
        "variables",
    ),
    "addheader": Spec((S, S), {"last": Tag()}, "editheader"),
    "deleteheader": Spec((S, L), {**MATCH, **INDEX}, "editheader", optional=1),
    "include": Spec(
        (S,),
        {
            "personal": Tag(group="location"),
            "global": Tag(group="location"),
            "once": Tag(),
            "optional": Tag(),
        },
        "include",
    ),
    "return": Spec(extension="include"),
    "global": Spec((L,), extension="include"),
}

TESTS: dict[str, Spec] = {
    "address": Spec((L, L), {**MATCH, **ADDRESS_PART, **INDEX}),
    "envelope": Spec((L, L), {**MATCH, **ADDRESS_PART}, "envelope"),
    "header": Spec((L, L), {**MATCH, **INDEX}),
    "exists": Spec((L,)),
    "size": Spec((N,), {"over": Tag(group="size"), "under": Tag(group="size")}),
    "allof": Spec(tests="list"),
    "anyof": Spec(tests="list"),
    "not": Spec(tests="one"),
    "true": Spec(),
    "false": Spec(),
    "body": Spec(
        (L,),
        {
            **MATCH,
            "raw": Tag(group="transform"),
            "content": Tag(L, group="transform"),
            "text": Tag(group="transform"),
        },
        "body",
    ),
    "string": Spec((L, L), MATCH, "variables"),
    "hasflag": Spec((L, L), MATCH, "imap4flags", optional=1, optional_first=True),
    "date": Spec(
        (S, S, L),
        {
            **MATCH,
            **INDEX,
            "zone": Tag(S, group="zone"),
            "originalzone": Tag(group="zone"),
        },
        "date",
    ),
    "currentdate": Spec((S, L), {**MATCH, "zone": Tag(S)}, "date"),
    "duplicate": Spec(
        (),
        {
            "handle": Tag(S),
            "header": Tag(S, group="id"),
            "uniqueid": Tag(S, group="id"),
            "seconds": Tag(N),
            "last": Tag(),
        },
        "duplicate",
    ),
    "mailboxexists": Spec((L,), extension="mailbox"),
    "specialuse_exists": Spec((S, L), extension="special-use", optional=1, optional_first=True),
}


class Checker:
    """Walks a parsed script once, checking it against COMMANDS and TESTS."""

    def __init__(self) -> None:
        self.required: set[str] = set()
        self.includes: list[Command] = []

    def script(self, commands: list[Command]) -> None:
        self.block(commands, top=True)

    def block(self, commands: list[Command], top: bool = False) -> None:
        previous = None
        requires_allowed = top
        for cmd in commands:
            if cmd.name == "require":
                if not requires_allowed:
                    raise SieveError(cmd.line, "require must come before any other command")
            else:
                requires_allowed = False
            if cmd.name in ("elsif", "else") and previous not in ("if", "elsif"):
                raise SieveError(cmd.line, f"{cmd.name} without a preceding if")
            self.command(cmd)
            previous = cmd.name

    def command(self, cmd: Command) -> None:
        spec = COMMANDS.get(cmd.name)
        if spec is None:
            raise SieveError(cmd.line, f"unknown command '{cmd.name}'")
        self.need(spec.extension, cmd.line, cmd.name)
        self.arguments(cmd, spec)
        self.test_arguments(cmd.name, cmd.line, spec, cmd.tests)
        if spec.block and cmd.block is None:
            raise SieveError(cmd.line, f"{cmd.name} needs a block")
        if not spec.block and cmd.block is not None:
            raise SieveError(cmd.line, f"{cmd.name} takes no block")
        if cmd.name == "require":
            for value in cmd.positional[0]:
                # RFC 5228 §3.2: an unknown capability makes the whole script an error.
                if value.text not in EXTENSIONS and value.text not in BUILT_IN:
                    raise SieveError(value.line, f"unsupported extension '{value.text}'")
                self.required.add(value.text)
            return
        self.specific(cmd)
        if cmd.block is not None:
            self.block(cmd.block)

    def test(self, test: Test) -> None:
        spec = TESTS.get(test.name)
        if spec is None:
            raise SieveError(test.line, f"unknown test '{test.name}'")
        self.need(spec.extension, test.line, test.name)
        self.arguments(test, spec)
        self.test_arguments(test.name, test.line, spec, test.tests)
        self.specific(test)

    def test_arguments(self, name: str, line: int, spec: Spec, tests: list[Test]) -> None:
        if spec.tests == "none" and tests:
            raise SieveError(line, f"{name} takes no test")
        if spec.tests == "one" and len(tests) != 1:
            raise SieveError(line, f"{name} needs exactly one test")
        if spec.tests == "list" and not tests:
            raise SieveError(line, f"{name} needs a test list")
        for test in tests:
            self.test(test)

    def need(self, extension: str | None, line: int, what: str) -> None:
        if extension is not None and extension not in self.required:
            raise SieveError(line, f'{what} needs require "{extension}"')

    def arguments(self, node, spec: Spec) -> None:
        """Split the node's arguments into tags and positional values, typed."""
        tags: dict = {}
        groups: dict[str, str] = {}
        positional: list = []
        args = node.arguments
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if arg.kind != "tag":
                positional.append(arg)
                continue
            if positional:
                raise SieveError(arg.line, f"tag :{arg.value} after positional arguments")
            tag = spec.tags.get(arg.value)
            if tag is None:
                raise SieveError(arg.line, f"{node.name} has no tag :{arg.value}")
            self.need(tag.extension, arg.line, f":{arg.value}")
            if arg.value in tags:
                raise SieveError(arg.line, f"tag :{arg.value} given twice")
            if tag.group is not None:
                if tag.group in groups:
                    raise SieveError(
                        arg.line, f":{arg.value} cannot be combined with :{groups[tag.group]}"
                    )
                groups[tag.group] = arg.value
            if tag.value is None:
                tags[arg.value] = True
                continue
            if i >= len(args) or args[i].kind == "tag":
                raise SieveError(arg.line, f":{arg.value} needs an argument")
            tags[arg.value] = self.typed(args[i], tag.value, f":{arg.value}")
            i += 1
        wanted = list(spec.positional)
        if len(positional) != len(wanted):
            if spec.optional and len(positional) == len(wanted) - spec.optional:
                wanted = (
                    wanted[spec.optional :] if spec.optional_first else wanted[: -spec.optional]
                )
            else:
                raise SieveError(
                    node.line,
                    f"{node.name} takes {len(spec.positional)} argument(s), got {len(positional)}",
                )
        values = [self.typed(a, t, node.name) for a, t in zip(positional, wanted, strict=True)]
        if spec.optional and spec.optional_first and len(values) < len(spec.positional):
            values = [None] * (len(spec.positional) - len(values)) + values
        elif spec.optional and len(values) < len(spec.positional):
            values = values + [None] * (len(spec.positional) - len(values))
        node.tags = tags
        node.positional = values

    def typed(self, arg: Argument, want: str, what: str):
        if want == N:
            if arg.kind != "number":
                raise SieveError(arg.line, f"{what} wants a number")
            return arg.value
        if arg.kind == "string":
            value = self.string(arg.value)
            return StringList([value]) if want == L else value
        if arg.kind == "list" and want == L:
            return StringList(self.string(v) for v in arg.value)
        raise SieveError(arg.line, f"{what} wants a {'string list' if want == L else 'string'}")

    def string(self, value: StringValue) -> StringValue:
        if "encoded-character" in self.required:
            value.text = decode_encoded(value.text, value.line)
        return value

    def specific(self, node) -> None:
        """The checks particular to one command or test."""
        tags, pos, line = node.tags, node.positional, node.line
        comparator = tags.get("comparator")
        if comparator is not None:
            if comparator.text not in COMPARATORS:
                raise SieveError(line, f"unknown comparator '{comparator.text}'")
            self.need(COMPARATORS[comparator.text], line, f"comparator {comparator.text}")
        for relation in ("value", "count"):
            if relation in tags and tags[relation].text.lower() not in RELATIONAL_OPERATORS:
                raise SieveError(line, f"unknown relational operator '{tags[relation].text}'")
        if "regex" in tags:
            keys = pos[-1] if node.name not in ("deleteheader",) else (pos[1] or [])
            for key in keys or ():
                if not has_variables(key.text, "variables" in self.required):
                    _check_regex(key.text, key.line)
        if (
            "last" in tags
            and "index" not in tags
            and node.name in ("address", "header", "date", "deleteheader")
        ):
            raise SieveError(line, ":last needs :index")
        if "index" in tags and tags["index"] < 1:
            raise SieveError(line, ":index counts from 1")
        name = node.name
        if name == "size" and not ("over" in tags or "under" in tags):
            raise SieveError(line, "size needs :over or :under")
        if name in ("date", "currentdate"):
            part = pos[-2]
            if not has_variables(part.text, "variables" in self.required) and (
                part.text.lower() not in DATE_PARTS
            ):
                raise SieveError(part.line, f"unknown date part '{part.text}'")
        if name == "set":
            _check_variable_name(pos[0], allow_namespace=False)
        if name == "global":
            for value in pos[0]:
                _check_variable_name(value, allow_namespace=False)
        if name in ("setflag", "addflag", "removeflag") and pos[0] is not None:
            _check_variable_name(pos[0], allow_namespace=True)
        if name == "hasflag" and pos[0] is not None:
            for value in pos[0]:
                _check_variable_name(value, allow_namespace=True)
        if name == "include":
            # RFC 6609 §3.2: a script name, not a path.
            if "/" in pos[0].text or not pos[0].text:
                raise SieveError(line, "include takes a script name, not a path")
            self.includes.append(node)
        if name == "envelope":
            for part in pos[0]:
                if part.text.lower() not in ("from", "to") and not has_variables(
                    part.text, "variables" in self.required
                ):
                    raise SieveError(part.line, f"unknown envelope part '{part.text}'")
        if name == "vacation":
            period = tags.get("days", tags.get("seconds"))
            if period is not None and period < 0:
                raise SieveError(line, "negative period")
        if name in ("addheader", "deleteheader") and not has_variables(
            pos[0].text, "variables" in self.required
        ):
            if not _is_field_name(pos[0].text):
                raise SieveError(pos[0].line, f"invalid header field name '{pos[0].text}'")


class StringList(list):
    """A string-list argument; `plain` is its texts when none refers to a variable (the
    interpreter's fast path), worked out on first use."""

    plain: list[str] | None = None
    checked: bool = False


def _check_variable_name(value: StringValue, allow_namespace: bool) -> None:
    if not valid_variable_name(value.text, allow_namespace):
        raise SieveError(value.line, f"invalid variable name '{value.text}'")


def _is_field_name(name: str) -> bool:
    # RFC 5322 §3.6.8: printable US-ASCII except colon.
    return bool(name) and all(33 <= ord(c) <= 126 and c != ":" for c in name)


def _check_regex(pattern: str, line: int) -> None:
    try:
        compile_regex(pattern, False)
    except (RecursionError, ValueError) as e:
        raise SieveError(line, f"invalid regular expression: {e}") from None
