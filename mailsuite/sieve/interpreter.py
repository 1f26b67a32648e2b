"""Running a Sieve script on one message: a pure function of the script, the message and its
envelope, and the limits; it returns the Outcome and touches nothing.

Bounded: every command, test and string comparison costs steps out of `Limits.max_steps`;
variables are cut at `max_variable_size`. Running out, or any run-time error (RFC 5228
§2.10.6), yields the implicit keep into INBOX with the error, so a script never loses mail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailsuite.sieve.actions import Outcome, Redirect, Reject, Store, VacationReply
from mailsuite.sieve.dateparts import parse_date_value, parse_zone, part
from mailsuite.sieve.fastpath import address_part, compiled
from mailsuite.sieve.grammar import Command, StringValue, Test
from mailsuite.sieve.matching import (
    MAX_MATCH_TEXT,
    MAX_REGEX_TEXT,
    MatchError,
    MatchSpec,
    match,
    regex_of,
    spec_of,
)
from mailsuite.sieve.message_view import MessageInput, MessageView
from mailsuite.sieve.script import Script
from mailsuite.sieve.strings import expand, quote_regex, quote_wildcard
from mailsuite.sieve.vacation import compose, own_addresses, refusal, state_key

DAY = 86400
# RFC 3501 flag: "\\" atom or atom (no specials, controls or 8-bit); RFC 5232 §3 lets us
# ignore the rest.
_FLAG = re.compile(r"\\?[!#$&\'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+\Z")


@dataclass(frozen=True)
class Limits:
    max_steps: int = 20000
    max_actions: int = 32
    max_redirects: int = 4
    max_variable_size: int = 4096
    max_variables: int = 256
    vacation_days: int = 7
    vacation_min_days: float = 1
    vacation_max_days: int = 90
    duplicate_seconds: int = 14 * DAY
    duplicate_max_seconds: int = 90 * DAY


class RunError(Exception):
    """A run-time error: the run ends in the implicit keep (RFC 5228 §2.10.6)."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")


class _Stop(Exception):
    pass


class _Return(Exception):
    pass


@dataclass
class _Context:
    """One script's scope: its own variables; `global` names point at the run's globals."""

    script: Script
    variables: dict[str, str] = field(default_factory=dict)
    global_names: set[str] = field(default_factory=set)

    @property
    def with_variables(self) -> bool:
        return "variables" in self.script.required


def run(script: Script, message: MessageInput, limits: Limits | None = None) -> Outcome:
    """The actions `script` takes on `message` (no I/O: delivery carries them out)."""
    limits = limits or Limits()
    machine = _Machine(message, limits)
    try:
        try:
            machine.run_script(script, _Context(script))
        except _Stop:
            pass
        except _Return:
            pass
        return machine.outcome()
    except (RunError, MatchError, RecursionError) as e:
        return _fallback(message, str(e))


def _fallback(message: MessageInput, error: str) -> Outcome:
    return Outcome(stores=[Store("INBOX")], errors=[error])


class _Machine:
    def __init__(self, message: MessageInput, limits: Limits):
        self.view = MessageView(message)
        self.limits = limits
        self.now = message.now or datetime.now(UTC)
        self.steps = 0
        self.flags: list[str] = []  # RFC 5232 internal variable
        self.globals: dict[str, str] = {}
        self.matches: list[str] = []
        self.implicit_keep = True
        self.stores: list[Store] = []
        self.redirects: list[Redirect] = []
        self.reject: Reject | None = None
        self.vacation: VacationReply | None = None
        self.vacation_asked = False
        self.vacation_skipped: str | None = None
        self.duplicates: list[tuple[str, int]] = []
        self.actions = 0
        self.included_once: set[tuple[str, str]] = set()

    # -- bookkeeping -----------------------------------------------------------------------

    def step(self, line: int, cost: int = 1) -> None:
        self.steps += cost
        if self.steps > self.limits.max_steps:
            raise RunError(line, "the script ran too long")

    def action(self, line: int) -> None:
        self.actions += 1
        if self.actions > self.limits.max_actions:
            raise RunError(line, "too many actions")

    def outcome(self) -> Outcome:
        stores = list(self.stores)
        if self.implicit_keep:
            stores.append(Store(self.view.input.folder, tuple(self.flags)))
        merged: dict[str, Store] = {}
        for s in stores:
            # RFC 5228 §2.10.3: the same folder twice is one copy; flags are merged.
            if s.folder in merged:
                old = merged[s.folder]
                flags = tuple(dict.fromkeys(old.flags + s.flags))
                merged[s.folder] = Store(
                    s.folder, flags, old.create or s.create, old.special_use or s.special_use
                )
            else:
                merged[s.folder] = s
        return Outcome(
            stores=list(merged.values()),
            redirects=self.redirects,
            reject=self.reject,
            vacation=self.vacation,
            discarded=not merged and not self.redirects,
            message=self.view.message_bytes() if self.view.edited else None,
            duplicates=self.duplicates,
            vacation_skipped=self.vacation_skipped,
        )

    # -- strings and variables -------------------------------------------------------------

    def text(self, value: StringValue | None, ctx: _Context) -> str:
        if value is None:
            return ""
        if "${" not in value.text or not ctx.with_variables:
            return value.text
        self.step(value.line)
        return expand(value.text, _Lookup(self, ctx), self.matches, self.limits.max_variable_size)

    def texts(self, values: list[StringValue] | None, ctx: _Context) -> list[str]:
        if not values:
            return []
        if not getattr(values, "checked", True):
            values.checked = True
            if not any("${" in v.text for v in values):
                values.plain = [v.text for v in values]
        plain = getattr(values, "plain", None)
        if plain is not None:
            return plain
        return [self.text(v, ctx) for v in values]

    def get_variable(self, name: str, ctx: _Context) -> str:
        name = name.lower()
        if name.startswith("global."):
            return self.globals.get(name[7:], "")
        if name in ctx.global_names:
            return self.globals.get(name, "")
        return ctx.variables.get(name, "")

    def set_variable(self, name: str, value: str, ctx: _Context, line: int) -> None:
        name = name.lower()
        value = value[: self.limits.max_variable_size]
        target = ctx.variables
        if name.startswith("global."):
            name, target = name[7:], self.globals
        elif name in ctx.global_names:
            target = self.globals
        if name not in target and len(target) >= self.limits.max_variables:
            raise RunError(line, "too many variables")
        target[name] = value

    # -- running ---------------------------------------------------------------------------

    def run_script(self, script: Script, ctx: _Context) -> None:
        self.block(script.commands, ctx)

    def block(self, commands: list[Command], ctx: _Context) -> None:
        skip_else = False
        limit = self.limits.max_steps
        for cmd in commands:
            # The step count inline: this loop is most of what a long filter costs.
            self.steps += 1
            if self.steps > limit:
                raise RunError(cmd.line, "the script ran too long")
            name = cmd.name
            if name == "if" or (name == "elsif" and not skip_else):
                test = cmd.tests[0]
                fast = test.__dict__.get("_compiled", False)
                if fast:
                    # A compiled test, called straight (test()'s own step is counted here).
                    self.steps += 1
                    skip_else = fast(self)
                else:
                    skip_else = self.test(test, ctx)
                if skip_else:
                    self.block(cmd.block, ctx)
            elif name == "elsif":
                pass
            elif name == "else":
                if not skip_else:
                    self.block(cmd.block, ctx)
                skip_else = False
            else:
                skip_else = False
                self.command(cmd, ctx)

    def command(self, cmd: Command, ctx: _Context) -> None:
        handler = getattr(self, "do_" + cmd.name, None)
        if handler is None:
            return  # require
        handler(cmd, ctx)

    def do_stop(self, cmd, ctx):
        raise _Stop

    def do_return(self, cmd, ctx):
        raise _Return

    def do_keep(self, cmd, ctx):
        self.action(cmd.line)
        self.no_reject(cmd.line, "keep")
        flags = self.flag_list(cmd.tags["flags"], ctx) if "flags" in cmd.tags else list(self.flags)
        self.stores.append(Store(self.view.input.folder, tuple(flags)))
        self.implicit_keep = False

    def do_discard(self, cmd, ctx):
        self.implicit_keep = False

    def do_fileinto(self, cmd, ctx):
        self.action(cmd.line)
        self.no_reject(cmd.line, "fileinto")
        folder = self.text(cmd.positional[0], ctx)
        if not folder or len(folder) > 1000:
            raise RunError(cmd.line, "invalid folder name")
        flags = self.flag_list(cmd.tags["flags"], ctx) if "flags" in cmd.tags else list(self.flags)
        special = self.text(cmd.tags["specialuse"], ctx) if "specialuse" in cmd.tags else None
        if special is not None:
            # RFC 8579 §4: the folder that has this special use wins over the name.
            for name, use in self.view.folders().items():
                if use and special.lower() in use.lower().split():
                    folder = name
                    break
        exists = self.view.folder_exists(folder)
        if not exists and "create" not in cmd.tags:
            raise RunError(cmd.line, f"folder {folder!r} does not exist")
        if folder.upper() == "INBOX":
            folder = "INBOX"
        self.stores.append(Store(folder, tuple(flags), not exists, special))
        if "copy" not in cmd.tags:
            self.implicit_keep = False

    def do_redirect(self, cmd, ctx):
        self.action(cmd.line)
        self.no_reject(cmd.line, "redirect")
        address = self.text(cmd.positional[0], ctx).strip()
        if address.startswith("<") and address.endswith(">"):
            address = address[1:-1]
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or any(c in address for c in " \t\r\n<>,;"):
            raise RunError(cmd.line, f"invalid redirect address {address!r}")
        copy = "copy" in cmd.tags
        # RFC 5228 §2.10.3: the same address twice is one redirect.
        if not any(r.address.lower() == address.lower() for r in self.redirects):
            if len(self.redirects) >= self.limits.max_redirects:
                raise RunError(cmd.line, "too many redirects")
            self.redirects.append(Redirect(address, copy))
        if not copy:
            self.implicit_keep = False

    def no_reject(self, line: int, what: str) -> None:
        # RFC 5429 §2.2: reject cannot be combined with keep, fileinto, redirect or vacation.
        if self.reject is not None:
            raise RunError(line, f"{what} cannot follow reject")

    def do_reject(self, cmd, ctx, extended=False):
        self.action(cmd.line)
        if self.stores or self.redirects or self.vacation_asked or self.reject is not None:
            raise RunError(cmd.line, "reject cannot be combined with other actions")
        self.reject = Reject(self.text(cmd.positional[0], ctx), extended)
        self.implicit_keep = False

    def do_ereject(self, cmd, ctx):
        self.do_reject(cmd, ctx, extended=True)

    def do_vacation(self, cmd, ctx):
        self.action(cmd.line)
        self.no_reject(cmd.line, "vacation")
        if self.vacation_asked:
            raise RunError(cmd.line, "vacation used twice")
        self.vacation_asked = True
        tags = cmd.tags
        reason = self.text(cmd.positional[0], ctx)
        subject = self.text(tags["subject"], ctx) if "subject" in tags else None
        from_ = self.text(tags["from"], ctx) if "from" in tags else None
        handle = self.text(tags["handle"], ctx) if "handle" in tags else None
        extra = self.texts(tags.get("addresses"), ctx)
        own = own_addresses(self.view, extra)
        why = refusal(self.view, own)
        if why is not None:
            self.vacation_skipped = why
            return
        lim = self.limits
        if "seconds" in tags:
            period = tags["seconds"]
        else:
            period = tags.get("days", lim.vacation_days) * DAY
        period = int(min(max(period, lim.vacation_min_days * DAY), lim.vacation_max_days * DAY))
        key = state_key(handle, reason, subject or "", from_ or "", "mime" in tags)
        message = compose(
            self.view,
            reason=reason,
            subject=subject,
            from_=from_,
            mime="mime" in tags,
            now=self.now,
        )
        self.vacation = VacationReply(self.view.input.mail_from, message, key, period)

    # -- imap4flags (RFC 5232) -------------------------------------------------------------

    def flag_list(self, values: list[StringValue], ctx: _Context) -> list[str]:
        out: list[str] = []
        for text in self.texts(values, ctx):
            for flag in text.split():
                if _FLAG.match(flag) and flag.lower() not in (f.lower() for f in out):
                    out.append(flag)
        return out

    def _flags_of(self, name: StringValue | None, ctx: _Context) -> list[str]:
        if name is None:
            return self.flags
        return self.get_variable(name.text, ctx).split()

    def _set_flags(self, name: StringValue | None, flags: list[str], ctx: _Context, line: int):
        if name is None:
            self.flags = flags
        else:
            self.set_variable(name.text, " ".join(flags), ctx, line)

    def do_setflag(self, cmd, ctx):
        self._set_flags(cmd.positional[0], self.flag_list(cmd.positional[1], ctx), ctx, cmd.line)

    def do_addflag(self, cmd, ctx):
        current = list(self._flags_of(cmd.positional[0], ctx))
        for flag in self.flag_list(cmd.positional[1], ctx):
            if flag.lower() not in (f.lower() for f in current):
                current.append(flag)
        self._set_flags(cmd.positional[0], current, ctx, cmd.line)

    def do_removeflag(self, cmd, ctx):
        gone = {f.lower() for f in self.flag_list(cmd.positional[1], ctx)}
        current = [f for f in self._flags_of(cmd.positional[0], ctx) if f.lower() not in gone]
        self._set_flags(cmd.positional[0], current, ctx, cmd.line)

    # -- variables (RFC 5229) --------------------------------------------------------------

    def do_set(self, cmd, ctx):
        value = self.text(cmd.positional[1], ctx)
        tags = cmd.tags
        # §4.1: modifiers apply from the highest precedence down.
        if "lower" in tags:
            value = value.lower()
        if "upper" in tags:
            value = value.upper()
        if "lowerfirst" in tags:
            value = value[:1].lower() + value[1:]
        if "upperfirst" in tags:
            value = value[:1].upper() + value[1:]
        if "quotewildcard" in tags:
            value = quote_wildcard(value)
        if "quoteregex" in tags:
            value = quote_regex(value)
        if "length" in tags:
            value = str(len(value))
        self.set_variable(cmd.positional[0].text, value, ctx, cmd.line)

    # -- include (RFC 6609) ----------------------------------------------------------------

    def do_include(self, cmd, ctx):
        location = "global" if cmd.tags.get("global") else "personal"
        name = self.text(cmd.positional[0], ctx)
        key = (location, name)
        if "once" in cmd.tags and key in self.included_once:
            return
        self.included_once.add(key)
        if key not in ctx.script.included or ctx.script.included[key] is None:
            if "optional" in cmd.tags:
                return
            raise RunError(cmd.line, f"included script {name!r} not found")
        child = ctx.script.included[key]
        self.step(cmd.line, 10)
        try:
            self.run_script(child, _Context(child))
        except _Return:
            pass

    def do_global(self, cmd, ctx):
        for value in cmd.positional[0]:
            ctx.global_names.add(value.text.lower())

    # -- editheader (RFC 5293) -------------------------------------------------------------

    def do_addheader(self, cmd, ctx):
        name = self.text(cmd.positional[0], ctx)
        value = self.text(cmd.positional[1], ctx)
        if _protected(name) or not _field_name(name):
            return  # §6: trace fields stay as they are
        self.step(cmd.line, 10)
        self.view.add_field(name, value, "last" in cmd.tags)

    def do_deleteheader(self, cmd, ctx):
        name = self.text(cmd.positional[0], ctx)
        if _protected(name):
            return
        patterns = self.texts(cmd.positional[1], ctx) if cmd.positional[1] is not None else None
        spec = spec_of(cmd.tags)
        index = cmd.tags.get("index")
        total = self.view.count(name)
        self.step(cmd.line, total + 1)
        if index is not None:
            wanted = total - index if "last" in cmd.tags else index - 1
        else:
            wanted = None

        def keep(i: int, value: str) -> bool:
            if wanted is not None and i != wanted:
                return True
            if patterns is None:
                return False
            return not match(spec, [value], patterns)[0]

        self.view.delete_fields(name, keep)

    # -- tests -----------------------------------------------------------------------------

    def test(self, test: Test, ctx: _Context) -> bool:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise RunError(test.line, "the script ran too long")
        fast = test.__dict__.get("_compiled", False)
        if fast is False:
            fast = compiled(test)
        if fast is not None:
            return fast(self)
        handler = getattr(self, "test_" + test.name)
        return handler(test, ctx)

    def test_true(self, t, ctx):
        return True

    def test_false(self, t, ctx):
        return False

    def test_not(self, t, ctx):
        return not self.test(t.tests[0], ctx)

    def test_allof(self, t, ctx):
        return all(self.test(x, ctx) for x in t.tests)

    def test_anyof(self, t, ctx):
        return any(self.test(x, ctx) for x in t.tests)

    def test_exists(self, t, ctx):
        return all(self.view.exists(n) for n in self.texts(t.positional[0], ctx))

    def test_size(self, t, ctx):
        limit = t.positional[0]
        return self.view.size > limit if "over" in t.tags else self.view.size < limit

    def compare(self, t, ctx, values: list[str], keys: list[str]) -> bool:
        """The match with its cost counted, and match variables set on success (§3.2)."""
        spec = _spec(t)
        self.charge(t.line, spec, values, keys)
        ok, groups = match(spec, values, keys)
        if ok and groups is not None and spec.kind in ("matches", "regex"):
            limit = self.limits.max_variable_size
            self.matches = [g[:limit] for g in groups[:10]]
        return ok

    def charge(self, line: int, spec: MatchSpec, values: list[str], keys: list[str]) -> None:
        """Steps for a match before it runs: one per comparison, and for wildcards and
        regular expressions (whose work grows with text times pattern) one more per KiB of
        that product, so that no script buys unbounded matching with one test."""
        cost = len(values) * max(len(keys), 1)
        if spec.kind == "matches":
            longest = max((len(k) for k in keys), default=0)
            cost += sum(min(len(v), MAX_MATCH_TEXT) for v in values) * longest // 128
        elif spec.kind == "regex":
            longest = max((len(regex_of(k, spec.comparator).prog) for k in keys), default=0)
            cost += sum(min(len(v), MAX_REGEX_TEXT) for v in values) * longest // 128
        else:
            cost += sum(len(v) for v in values) // 65536
        self.step(line, cost)

    def _pick(self, t, values: list):
        """:index N (counting from the end with :last), RFC 5260 §3."""
        index = t.tags.get("index")
        if index is None:
            return values
        i = len(values) - index if "last" in t.tags else index - 1
        return [values[i]] if 0 <= i < len(values) else []

    def test_header(self, t, ctx):
        values: list[str] = []
        for name in self.texts(t.positional[0], ctx):
            values.extend(self._pick(t, self.view.values(name)))
        return self.compare(t, ctx, values, self.texts(t.positional[1], ctx))

    def test_address(self, t, ctx):
        addresses: list[str] = []
        for name in self.texts(t.positional[0], ctx):
            for found in self._pick(t, self.view.header_addresses(name)):
                addresses.extend(found)
        return self._address_match(t, ctx, addresses)

    def test_envelope(self, t, ctx):
        addresses: list[str] = []
        for part_name in self.texts(t.positional[0], ctx):
            p = part_name.lower()
            if p == "from":
                addresses.append(self.view.input.mail_from)
            elif p == "to":
                addresses.append(self.view.input.recipient)
        return self._address_match(t, ctx, addresses)

    def _address_match(self, t, ctx, addresses: list[str]) -> bool:
        which = next((p for p in ("localpart", "domain", "user", "detail") if p in t.tags), "all")
        values = []
        for address in addresses:
            value = address_part(address, which)
            if value is not None:
                values.append(value)
        return self.compare(t, ctx, values, self.texts(t.positional[1], ctx))

    def test_body(self, t, ctx):
        if "raw" in t.tags:
            texts = self.view.body_texts("raw", [])
        elif "content" in t.tags:
            texts = self.view.body_texts("content", self.texts(t.tags["content"], ctx))
        else:
            texts = self.view.body_texts("text", [])
        spec = _spec(t)
        keys = self.texts(t.positional[0], ctx)
        self.charge(t.line, spec, texts, keys)
        # RFC 5173 §5: the body test never sets match variables.
        return match(spec, texts, keys)[0]

    def test_string(self, t, ctx):
        values = self.texts(t.positional[0], ctx)
        if "count" in t.tags:
            # RFC 5229 §5: with :count, empty strings are not counted.
            values = [v for v in values if v != ""]
        return self.compare(t, ctx, values, self.texts(t.positional[1], ctx))

    def test_hasflag(self, t, ctx):
        names = t.positional[0]
        if names is None:
            flags = list(self.flags)
        else:
            flags = []
            for name in names:
                flags.extend(self.get_variable(name.text, ctx).split())
        keys = [flag for k in self.texts(t.positional[1], ctx) for flag in k.split()]
        return self.compare(t, ctx, flags, keys)

    def _zone_of(self, t, ctx):
        if "zone" in t.tags:
            zone = parse_zone(self.text(t.tags["zone"], ctx))
            if zone is None:
                raise RunError(t.line, "invalid :zone")
            return zone
        return None

    def test_date(self, t, ctx):
        header, part_name, keys = t.positional
        header_name = self.text(header, ctx)
        part_text = self.text(part_name, ctx)
        zone = self._zone_of(t, ctx)
        values = []
        for raw in self._pick(t, self.view.values(header_name)):
            if header_name.lower() == "received":
                raw = raw.rpartition(";")[2]
            moment = parse_date_value(raw)
            if moment is None:
                continue
            if "originalzone" not in t.tags:
                moment = moment.astimezone(zone or self.now.tzinfo)
            value = part(moment, part_text)
            if value is not None:
                values.append(value)
        return self.compare(t, ctx, values, self.texts(keys, ctx))

    def test_currentdate(self, t, ctx):
        zone = self._zone_of(t, ctx)
        moment = self.now.astimezone(zone) if zone else self.now
        value = part(moment, self.text(t.positional[0], ctx))
        values = [value] if value is not None else []
        return self.compare(t, ctx, values, self.texts(t.positional[1], ctx))

    def test_duplicate(self, t, ctx):
        tags = t.tags
        if "uniqueid" in tags:
            value = self.text(tags["uniqueid"], ctx)
        else:
            name = self.text(tags["header"], ctx) if "header" in tags else "message-id"
            found = self.view.values(name)
            if not found:
                return False  # RFC 7352 §3.1: no id, no duplicate
            value = found[0].strip()
        handle = self.text(tags["handle"], ctx) if "handle" in tags else ""
        key = f"{handle}\0{value}"
        lim = self.limits
        period = min(tags.get("seconds", lim.duplicate_seconds), lim.duplicate_max_seconds)
        seen = self.view.input.seen
        last = seen(key) if seen is not None else None
        duplicate = last is not None and self.now.timestamp() - last < period
        # §3: the first occurrence's time counts unless :last asks for the latest.
        if not duplicate or "last" in tags:
            self.duplicates.append((key, int(period)))
        return duplicate

    def test_mailboxexists(self, t, ctx):
        return all(self.view.folder_exists(n) for n in self.texts(t.positional[0], ctx))

    def test_specialuse_exists(self, t, ctx):
        folders = self.view.folders()
        wanted = [u.lower() for u in self.texts(t.positional[1], ctx)]
        if t.positional[0] is not None:
            name = self.text(t.positional[0], ctx)
            if not _folder_exists(folders, name):
                return False
            uses = (folders.get(name) or "").lower().split()
            return all(u in uses for u in wanted)
        present = {u for use in folders.values() if use for u in use.lower().split()}
        return all(u in present for u in wanted)


class _Lookup(dict):
    """The variables a string expansion sees (RFC 5229 §3, RFC 6609 global.*)."""

    def __init__(self, machine: _Machine, ctx: _Context):
        super().__init__()
        self.machine = machine
        self.ctx = ctx

    def get(self, name, default=""):
        return self.machine.get_variable(name, self.ctx)


def _spec(node) -> MatchSpec:
    """The node's match type and comparator, worked out once per compiled script."""
    spec = node.__dict__.get("_match_spec")
    if spec is None:
        spec = node.__dict__["_match_spec"] = spec_of(node.tags)
    return spec


def _folder_exists(folders: dict, name: str) -> bool:
    if name.upper() == "INBOX":
        return True
    return name in folders


def _protected(name: str) -> bool:
    # RFC 5293 §6: Received and Auto-Submitted are not to be touched by scripts.
    return name.lower() in ("received", "auto-submitted")


def _field_name(name: str) -> bool:
    return bool(name) and all(33 <= ord(c) <= 126 and c != ":" for c in name)
