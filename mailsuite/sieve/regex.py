"""The `:regex` match type (draft-ietf-sieve-regex): POSIX extended regular expressions, run
by a Pike VM (Thompson's construction with submatch tracking).

Not Python's `re`: a backtracking engine can take exponential time on a short header with a
pattern like `(a|aa)*c`, and a delivery must stay bounded.  Here a search costs at most
len(text) x len(program) steps, whatever the pattern.  Where several matches are possible the
leftmost wins, and among those the one the pattern prefers (first alternative, greedy
repetition), as Perl-style engines choose; POSIX's leftmost-longest rule decides only which
submatches are reported, which Sieve scripts rarely depend on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

# Upper bounds on what one pattern may compile to, so that `(x{100}){100}` is refused at
# upload rather than built.
MAX_PROGRAM = 4000
MAX_REPEAT = 255
MAX_GROUPS = 32

_CLASSES = {
    "alpha": lambda c: c.isascii() and c.isalpha(),
    "digit": lambda c: "0" <= c <= "9",
    "alnum": lambda c: c.isascii() and c.isalnum(),
    "upper": lambda c: "A" <= c <= "Z",
    "lower": lambda c: "a" <= c <= "z",
    "space": lambda c: c in " \t\r\n\v\f",
    "blank": lambda c: c in " \t",
    "punct": lambda c: c.isascii() and 33 <= ord(c) <= 126 and not c.isalnum(),
    "print": lambda c: 32 <= ord(c) <= 126,
    "graph": lambda c: 33 <= ord(c) <= 126,
    "cntrl": lambda c: ord(c) < 32 or ord(c) == 127,
    "xdigit": lambda c: c in "0123456789abcdefABCDEF",
}
# Common escapes that GNU regcomp and Perl both know.
_ESCAPES = {
    "d": (False, (), ("digit",)),
    "D": (True, (), ("digit",)),
    "s": (False, (), ("space",)),
    "S": (True, (), ("space",)),
    "w": (False, ("_",), ("alnum",)),
    "W": (True, ("_",), ("alnum",)),
}


@dataclass(frozen=True)
class _Set:
    negated: bool
    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]
    classes: tuple[str, ...]

    def has(self, c: str, casefold: bool) -> bool:
        found = self._has(c) or (casefold and (self._has(c.upper()) or self._has(c.lower())))
        return found != self.negated

    def _has(self, c: str) -> bool:
        if c in self.chars:
            return True
        if any(lo <= c <= hi for lo, hi in self.ranges):
            return True
        return any(_CLASSES[name](c) for name in self.classes)


# Nodes: ("char", c) ("set", _Set) ("any",) ("bol",) ("eol",) ("group", n, node)
# ("cat", [nodes]) ("alt", [nodes]) ("repeat", node, min, max | None)


class _Parser:
    def __init__(self, pattern: str):
        self.p = pattern
        self.i = 0
        self.groups = 0

    def parse(self):
        node = self.alternation()
        if self.i < len(self.p):
            raise ValueError("unbalanced parenthesis")
        return node

    def alternation(self):
        branches = [self.sequence()]
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def sequence(self):
        items = []
        while self.i < len(self.p) and self.p[self.i] not in "|)":
            atom = self.atom()
            while self.i < len(self.p) and self.p[self.i] in "*+?{":
                atom = self.quantified(atom)
            items.append(atom)
        return ("cat", items)

    def atom(self):
        c = self.p[self.i]
        self.i += 1
        if c == "(":
            self.groups += 1
            if self.groups > MAX_GROUPS:
                raise ValueError("too many groups")
            number = self.groups
            inner = self.alternation()
            if self.i >= len(self.p) or self.p[self.i] != ")":
                raise ValueError("unbalanced parenthesis")
            self.i += 1
            return ("group", number, inner)
        if c == "[":
            return ("set", self.bracket())
        if c == ".":
            return ("any",)
        if c == "^":
            return ("bol",)
        if c == "$":
            return ("eol",)
        if c in "*+?{":
            raise ValueError(f"nothing to repeat before {c!r}")
        if c == "\\":
            if self.i >= len(self.p):
                raise ValueError("trailing backslash")
            c = self.p[self.i]
            self.i += 1
            if c in _ESCAPES:
                negated, chars, classes = _ESCAPES[c]
                return ("set", _Set(negated, frozenset(chars), (), classes))
        return ("char", c)

    def quantified(self, atom):
        c = self.p[self.i]
        self.i += 1
        if c == "*":
            return ("repeat", atom, 0, None)
        if c == "+":
            return ("repeat", atom, 1, None)
        if c == "?":
            return ("repeat", atom, 0, 1)
        end = self.p.find("}", self.i)
        if end < 0:
            raise ValueError("bad interval")
        low_text, comma, high_text = self.p[self.i : end].partition(",")
        if not low_text.isdigit() or (high_text and not high_text.isdigit()):
            raise ValueError("bad interval")
        low = int(low_text)
        high = (int(high_text) if high_text else None) if comma else low
        if low > MAX_REPEAT or (high is not None and (high > MAX_REPEAT or high < low)):
            raise ValueError("bad interval")
        self.i = end + 1
        return ("repeat", atom, low, high)

    def bracket(self) -> _Set:
        p, n = self.p, len(self.p)
        negated = self.i < n and p[self.i] == "^"
        if negated:
            self.i += 1
        chars: set[str] = set()
        ranges: list[tuple[str, str]] = []
        classes: list[str] = []
        first = True
        while self.i < n:
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                return _Set(negated, frozenset(chars), tuple(ranges), tuple(classes))
            first = False
            if p.startswith("[:", self.i):
                end = p.find(":]", self.i + 2)
                name = p[self.i + 2 : end] if end > 0 else ""
                if name not in _CLASSES:
                    raise ValueError("unknown character class")
                classes.append(name)
                self.i = end + 2
                continue
            if p.startswith("[=", self.i) or p.startswith("[.", self.i):
                raise ValueError("collating elements are not supported")
            if self.i + 2 < n and p[self.i + 1] == "-" and p[self.i + 2] != "]":
                lo, hi = c, p[self.i + 2]
                if hi < lo:
                    raise ValueError("bad range")
                ranges.append((lo, hi))
                self.i += 3
                continue
            chars.add(c)
            self.i += 1
        raise ValueError("unterminated bracket expression")


class _Compiler:
    """Nodes to instructions: ("char", c) ("set", s) ("any",) ("bol",) ("eol",)
    ("split", x, y) (x preferred) ("jmp", x) ("save", slot) ("match",)."""

    def __init__(self):
        self.prog: list[list] = []

    def emit(self, *op) -> int:
        if len(self.prog) >= MAX_PROGRAM:
            raise ValueError("regular expression too complex")
        self.prog.append(list(op))
        return len(self.prog) - 1

    def node(self, node) -> None:
        kind = node[0]
        if kind in ("char", "set"):
            self.emit(kind, node[1])
        elif kind in ("any", "bol", "eol"):
            self.emit(kind)
        elif kind == "group":
            self.emit("save", 2 * node[1])
            self.node(node[2])
            self.emit("save", 2 * node[1] + 1)
        elif kind == "cat":
            for item in node[1]:
                self.node(item)
        elif kind == "alt":
            jumps = []
            branches = node[1]
            for branch in branches[:-1]:
                split = self.emit("split", None, None)
                self.prog[split][1] = len(self.prog)
                self.node(branch)
                jumps.append(self.emit("jmp", None))
                self.prog[split][2] = len(self.prog)
            self.node(branches[-1])
            for j in jumps:
                self.prog[j][1] = len(self.prog)
        else:
            self.repeat(node[1], node[2], node[3])

    def repeat(self, inner, low: int, high: int | None) -> None:
        for _ in range(low):
            self.node(inner)
        if high is None:
            split = self.emit("split", None, None)
            self.prog[split][1] = len(self.prog)
            self.node(inner)
            self.emit("jmp", split)
            self.prog[split][2] = len(self.prog)
            return
        splits = []
        for _ in range(high - low):
            split = self.emit("split", None, None)
            self.prog[split][1] = len(self.prog)
            splits.append(split)
            self.node(inner)
        for split in splits:
            self.prog[split][2] = len(self.prog)


class Regex:
    def __init__(self, pattern: str, casefold: bool):
        parser = _Parser(pattern)
        tree = parser.parse()
        compiler = _Compiler()
        compiler.node(("group", 0, tree))
        compiler.emit("match")
        self.prog = [tuple(op) for op in compiler.prog]
        self.groups = parser.groups
        self.casefold = casefold

    def search(self, text: str) -> list[str] | None:
        """The leftmost match: [whole match, group 1, ...] ("" for a group that took no
        part), or None."""
        prog, casefold, n = self.prog, self.casefold, len(text)
        folded = text.lower() if casefold and text.isascii() else text
        empty = (None,) * (2 * self.groups + 2)
        clist: list = []
        seen: set[int] = set()
        matched = None
        for pos in range(n + 1):
            if matched is None:
                self._follow(clist, seen, 0, empty, pos, n)
            if not clist:
                if matched is not None:
                    break
                continue
            nlist: list = []
            nseen: set[int] = set()
            c = folded[pos] if pos < n else ""
            for pc, caps in clist:
                op = prog[pc]
                kind = op[0]
                if kind == "match":
                    matched = caps
                    break  # threads after this one have lower priority
                if pos >= n:
                    continue
                if kind == "any":
                    ok = True
                elif kind == "char":
                    ok = op[1] == c or (casefold and op[1].lower() == c.lower())
                else:
                    ok = op[1].has(text[pos], casefold)
                if ok:
                    self._follow(nlist, nseen, pc + 1, caps, pos + 1, n)
            clist, seen = nlist, nseen
        if matched is None:
            return None
        out = []
        for g in range(self.groups + 1):
            start, end = matched[2 * g], matched[2 * g + 1]
            out.append(text[start:end] if start is not None and end is not None else "")
        return out

    def _follow(self, out: list, seen: set, pc: int, caps: tuple, pos: int, n: int) -> None:
        """Add the thread at `pc` and every thread its jumps reach, in priority order."""
        prog = self.prog
        stack = [(pc, caps)]
        while stack:
            pc, caps = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            op = prog[pc]
            kind = op[0]
            if kind == "jmp":
                stack.append((op[1], caps))
            elif kind == "split":
                stack.append((op[2], caps))
                stack.append((op[1], caps))
            elif kind == "save":
                slots = list(caps)
                slots[op[1]] = pos
                stack.append((pc + 1, tuple(slots)))
            elif kind == "bol":
                if pos == 0:
                    stack.append((pc + 1, caps))
            elif kind == "eol":
                if pos == n:
                    stack.append((pc + 1, caps))
            else:
                out.append((pc, caps))


@lru_cache(maxsize=256)
def compile_regex(pattern: str, casefold: bool) -> Regex:
    """ValueError for a pattern that is not a valid (or a too complex) POSIX ERE."""
    return Regex(pattern, casefold)
