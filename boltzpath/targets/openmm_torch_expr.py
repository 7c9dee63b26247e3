"""A small parser for OpenMM's (Lepton) energy-expression strings, evaluated with torch ops.

OpenMM custom forces carry their physics as text, e.g. the OBC1 Born-radius value
``"1/(1/or-tanh(0.8*psi+2.909125*psi^3)/radius);psi=I*or; radius=or+offset; offset=0.009"``.
The first clause is the expression; each ``name=...`` clause after a ``;`` defines an
intermediate that any clause may use (in any order). ``parse`` turns such a string into a tree
of tuples that ``Expression.evaluate`` walks with torch functions, so the translated energy is
differentiable by autograd and runs batched on any device.

Grammar (Lepton): ``+ - * / ^`` (``^`` binds tighter than unary minus, right-associative),
numbers, names, and the functions in ``FUNCTIONS``. Nothing is ever passed to Python ``eval``;
an unknown function or variable raises ``BadInput``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from boltzpath.errors import BadInput


def _tensor(v) -> torch.Tensor:
    """Python numbers become 0-d float64 tensors (they then follow the batch tensors' dtype)."""
    return v if torch.is_tensor(v) else torch.tensor(float(v), dtype=torch.float64)


def _step(x: torch.Tensor) -> torch.Tensor:
    # Lepton: step(x) = 1 if x >= 0 else 0
    return (x >= 0).to(x.dtype)


def _select(c, a, b):
    # Lepton: select(x, y, z) = z if x == 0 else y
    return torch.where(c != 0, a, b)


FUNCTIONS: dict[str, tuple[int, Callable]] = {
    "sqrt": (1, torch.sqrt), "exp": (1, torch.exp), "log": (1, torch.log),
    "sin": (1, torch.sin), "cos": (1, torch.cos), "tan": (1, torch.tan),
    "tanh": (1, torch.tanh), "cosh": (1, torch.cosh), "sinh": (1, torch.sinh),
    "abs": (1, torch.abs), "step": (1, _step), "erf": (1, torch.erf), "erfc": (1, torch.erfc),
    "max": (2, torch.maximum), "min": (2, torch.minimum), "select": (3, _select),
}

_NUMBER = r"\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?"
_TOKEN = re.compile(rf"\s*(?:({_NUMBER})|([A-Za-z_][A-Za-z0-9_]*)|(.))")


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    for m in _TOKEN.finditer(text):
        num, name, op = m.groups()
        if num is not None:
            out.append(("num", num))
        elif name is not None:
            out.append(("name", name))
        elif op is not None and not op.isspace():
            if op not in "+-*/^(),":
                raise BadInput(f"unsupported character {op!r} in OpenMM expression {text!r}")
            out.append(("op", op))
    return out


class _Parser:
    """Recursive descent: sum := term (('+'|'-') term)*; term := unary (('*'|'/') unary)*;
    unary := '-' unary | power; power := atom ('^' unary)?"""

    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self, kind=None, value=None):
        tok = self.peek()
        if (kind and tok[0] != kind) or (value and tok[1] != value):
            raise BadInput(f"cannot parse OpenMM expression {self.text!r} near token {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self):
        node = self.sum()
        if self.peek()[0] != "end":
            raise BadInput(f"trailing text in OpenMM expression {self.text!r}")
        return node

    def sum(self):
        node = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            node = (op, node, self.term())
        return node

    def term(self):
        node = self.unary()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take()[1]
            node = (op, node, self.unary())
        return node

    def unary(self):
        if self.peek() == ("op", "-"):
            self.take()
            return ("neg", self.unary())
        return self.power()

    def power(self):
        node = self.atom()
        if self.peek() == ("op", "^"):
            self.take()
            node = ("^", node, self.unary())
        return node

    def atom(self):
        kind, value = self.peek()
        if kind == "num":
            self.take()
            return ("num", float(value))
        if kind == "name":
            self.take()
            if self.peek() == ("op", "("):
                return self.call(value)
            return ("var", value)
        if (kind, value) == ("op", "("):
            self.take()
            node = self.sum()
            self.take("op", ")")
            return node
        raise BadInput(f"cannot parse OpenMM expression {self.text!r} near token {value!r}")

    def call(self, name: str):
        if name not in FUNCTIONS:
            raise BadInput(f"OpenMM expression uses unsupported function {name!r}: {self.text!r}")
        self.take("op", "(")
        args = [self.sum()]
        while self.peek() == ("op", ","):
            self.take()
            args.append(self.sum())
        self.take("op", ")")
        if len(args) != FUNCTIONS[name][0]:
            raise BadInput(f"{name} takes {FUNCTIONS[name][0]} arguments in {self.text!r}")
        return ("call", name, *args)


@dataclass(frozen=True)
class Expression:
    """A parsed expression with its ``;``-separated definitions."""

    text: str
    root: tuple
    definitions: Mapping[str, tuple]

    def free_variables(self) -> set[str]:
        """Names that must come from outside (parameters, r, computed values)."""
        names: set[str] = set()

        def walk(node):
            if node[0] == "var":
                if node[1] not in self.definitions:
                    names.add(node[1])
            elif node[0] == "call":
                for a in node[2:]:
                    walk(a)
            elif node[0] != "num":
                for a in node[1:]:
                    walk(a)

        walk(self.root)
        for d in self.definitions.values():
            walk(d)
        return names

    def evaluate(self, env: Mapping[str, torch.Tensor | float]) -> torch.Tensor:
        cache: dict[str, torch.Tensor] = {}
        active: set[str] = set()

        def var(name):
            if name in self.definitions:
                if name not in cache:
                    if name in active:
                        raise BadInput(f"circular definition of {name!r} in {self.text!r}")
                    active.add(name)
                    cache[name] = ev(self.definitions[name])
                    active.discard(name)
                return cache[name]
            if name in env:
                return env[name]
            raise BadInput(f"unknown variable {name!r} in OpenMM expression {self.text!r}")

        def ev(node):
            kind = node[0]
            if kind == "num":
                return node[1]
            if kind == "var":
                return var(node[1])
            if kind == "neg":
                return -ev(node[1])
            if kind == "call":
                return FUNCTIONS[node[1]][1](*(_tensor(ev(a)) for a in node[2:]))
            a, b = ev(node[1]), ev(node[2])
            if kind == "+":
                return a + b
            if kind == "-":
                return a - b
            if kind == "*":
                return a * b
            if kind == "/":
                return a / b
            if isinstance(b, float) and b == int(b):
                return a ** int(b)
            return a ** b

        return ev(self.root)


def parse(text: str) -> Expression:
    """Parse an OpenMM expression string (main clause plus ``name=value`` definitions)."""
    clauses = [c.strip() for c in text.split(";") if c.strip()]
    if not clauses:
        raise BadInput("empty OpenMM expression")
    definitions = {}
    for clause in clauses[1:]:
        name, eq, body = clause.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise BadInput(f"bad definition {clause!r} in OpenMM expression {text!r}")
        definitions[name.strip()] = _Parser(body).parse()
    return Expression(text=text, root=_Parser(clauses[0]).parse(), definitions=definitions)
