"""A safe calculator: ReAct's ``calculator`` tool.

:func:`evaluate` never runs arbitrary code: the expression is parsed with ``ast.parse(mode="eval")`` and
only whitelisted nodes are evaluated (numbers, ``+ - * / // % **``, unary ``+``/``-``, parentheses, the
functions and constants in :data:`FUNCTIONS` and :data:`CONSTANTS`).  It never raises: problems come
back as a string starting with ``"error:"``, which the LLM reads as the tool's output.

Arithmetic is exact where possible: numbers are :class:`fractions.Fraction` (``0.1 + 0.2`` is ``0.3``),
only irrational functions (``sqrt`` of a non-square, ``log``, ``sin``...) and ``pi``/``e`` make floats.
Results are printed as integers without ``.0``, terminating decimals exactly (up to 20 decimals),
anything else with 12 significant digits.

LLM-friendly syntax accepted:

* ``^`` is power (there is no XOR), ``×``/``·``/``∗`` multiply, ``÷`` divides, ``−``/``–`` subtract,
  ``√x``/``√(...)`` is ``sqrt``, ``π`` is ``pi``, ``3 x 4`` (spaces around the ``x``) multiplies;
* thousands separators: ``1,234,567.5`` is one number (outside function calls; inside a call
  ``max(1,234)`` has two arguments);
* ``n!`` (after a plain integer) is ``factorial(n)``;
* currency signs (``$ € £ ¥``) are ignored, a trailing ``=`` is ignored;
* percent: ``x%`` means ``x/100`` when nothing that could be its right operand follows -- at the end,
  before ``)``, ``,``, an operator or the word ``of``: ``15% of 80`` is 12, ``80 * 15%`` is 12, and
  ``50 + 10%`` is 50.1 (a percent is never relative to the left operand).  ``%`` followed by a number
  or ``(`` is the modulo operator: ``17 % 5`` is 2.  Use ``mod(a, b)`` for a modulo by a negative
  literal.

Guards: expressions longer than :data:`MAX_LENGTH` characters, values (results and intermediate
results, numerator and denominator) above :data:`MAX_BITS` bits (about 1000 decimal digits) and
exponents in number literals above 1000 are refused *before* they are computed -- ``9**9**9`` and
``factorial(10**6)`` are refused at once.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from decimal import Decimal, localcontext
from fractions import Fraction

__all__ = ["CONSTANTS", "FUNCTIONS", "MAX_BITS", "MAX_LENGTH", "evaluate"]

MAX_LENGTH = 500
MAX_BITS = 3400  # about 1023 decimal digits
MAX_ROUND_DIGITS = 100
MAX_LITERAL_EXPONENT = 1000
SIGNIFICANT_DIGITS = 12
MAX_EXACT_DECIMALS = 20

Number = Fraction | float


class CalculatorError(Exception):
    """A problem with the expression, reported to the caller as ``"error: <message>"``."""


# ---- values ----------------------------------------------------------------------------------------


def _check(value: Number) -> Number:
    """Refuse values that are too large (or not finite)."""
    if isinstance(value, Fraction):
        if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
            raise CalculatorError(f"result too large (more than about {int(MAX_BITS * 0.30103)} digits)")
        return value
    if math.isnan(value):
        raise CalculatorError("math domain error (result is not a number)")
    if math.isinf(value):
        raise CalculatorError("result too large (overflow)")
    return value


def _as_float(x: Number) -> float:
    try:
        return float(x)
    except OverflowError:
        raise CalculatorError("number too large for this function") from None


def _integer(x: Number, what: str) -> int:
    if isinstance(x, Fraction) and x.denominator == 1:
        return x.numerator
    if isinstance(x, float) and x.is_integer():
        return int(x)
    raise CalculatorError(f"{what} needs an integer, got {_format(x)}")


def _log2_abs(n: int) -> float:
    return math.log2(abs(n)) if n else 0.0


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1:
        e = exponent.numerator
        if isinstance(base, Fraction):
            size = max(_log2_abs(base.numerator), _log2_abs(base.denominator))
            if abs(e) * size > MAX_BITS + 1:
                raise CalculatorError(f"result too large (more than about {int(MAX_BITS * 0.30103)} digits)")
            if base == 0 and e < 0:
                raise CalculatorError("division by zero")
            return base**e
        return _float_power(base, float(e) if abs(e) < 2**53 else _as_float(exponent))
    if isinstance(exponent, Fraction) and isinstance(base, Fraction) and base >= 0:
        root = _exact_root(base, exponent.denominator)  # 8 ** (2/3) is exactly 4
        if root is not None:
            return _power(root, Fraction(exponent.numerator))
    if base < 0:
        raise CalculatorError("math domain error (fractional power of a negative number)")
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero")
    return _float_power(_as_float(base), _as_float(exponent))


def _float_power(base: float, exponent: float) -> float:
    try:
        return math.pow(base, exponent)
    except OverflowError:
        raise CalculatorError("result too large (overflow)") from None
    except ValueError:
        raise CalculatorError("math domain error") from None


def _integer_root(n: int, k: int) -> int:
    """The largest ``r`` with ``r**k <= n`` (``n >= 0``), by Newton's method on integers."""
    if n < 2:
        return n
    x = 1 << -(-n.bit_length() // k)  # 2**ceil(bits/k) >= the root
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _exact_root(x: Fraction, k: int) -> Fraction | None:
    """The exact ``k``-th root of ``x >= 0`` if it is rational, else None."""
    if k > MAX_BITS:
        return None
    parts = []
    for n in (x.numerator, x.denominator):
        root = _integer_root(n, k)
        if root**k != n:
            return None
        parts.append(root)
    return Fraction(parts[0], parts[1])


def _sqrt(x: Number) -> Number:
    if x < 0:
        raise CalculatorError("math domain error (square root of a negative number)")
    if isinstance(x, Fraction):
        rn, rd = math.isqrt(x.numerator), math.isqrt(x.denominator)
        if rn * rn == x.numerator and rd * rd == x.denominator:
            return Fraction(rn, rd)
        with localcontext() as ctx:
            ctx.prec = 30
            return float((Decimal(x.numerator) / Decimal(x.denominator)).sqrt())
    return math.sqrt(x)


def _log(x: Number, base: Number | None = None) -> float:
    def ln(v: Number) -> float:
        if v <= 0:
            raise CalculatorError("math domain error (logarithm of a non-positive number)")
        if isinstance(v, Fraction):
            return math.log(v.numerator) - math.log(v.denominator)
        return math.log(v)

    if base is None:
        return ln(x)
    denominator = ln(base)
    if denominator == 0:
        raise CalculatorError("math domain error (logarithm base 1)")
    return ln(x) / denominator


def _round(x: Number, digits: Number | None = None) -> Number:
    """Round half away from zero (2.5 -> 3, -2.5 -> -3), to ``digits`` decimals."""
    n = 0 if digits is None else _integer(digits, "round's digits")
    if abs(n) > MAX_ROUND_DIGITS:
        raise CalculatorError(f"round's digits must be between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}")
    value = x if isinstance(x, Fraction) else Fraction(x)
    scale = Fraction(10) ** n
    magnitude = math.floor(abs(value) * scale + Fraction(1, 2))
    rounded = Fraction(magnitude if value >= 0 else -magnitude) / scale
    return rounded if isinstance(x, Fraction) or digits is None else float(rounded)


def _estimated_bits(log_gamma: float) -> float:
    return log_gamma / math.log(2)


def _factorial(x: Number) -> Fraction:
    n = _integer(x, "factorial")
    if n < 0:
        raise CalculatorError("factorial of a negative number")
    if _estimated_bits(math.lgamma(n + 1)) > MAX_BITS:
        raise CalculatorError(f"result too large (factorial({n}) has more than about 1000 digits)")
    return Fraction(math.factorial(n))


def _comb(n_: Number, k_: Number) -> Fraction:
    n, k = _integer(n_, "comb"), _integer(k_, "comb")
    if n < 0 or k < 0:
        raise CalculatorError("comb needs non-negative integers")
    if k > n:
        return Fraction(0)
    bits = _estimated_bits(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1))
    if bits > MAX_BITS:
        raise CalculatorError("result too large")
    return Fraction(math.comb(n, k))


def _perm(n_: Number, k_: Number | None = None) -> Fraction:
    n = _integer(n_, "perm")
    k = n if k_ is None else _integer(k_, "perm")
    if n < 0 or k < 0:
        raise CalculatorError("perm needs non-negative integers")
    if k > n:
        return Fraction(0)
    if _estimated_bits(math.lgamma(n + 1) - math.lgamma(n - k + 1)) > MAX_BITS:
        raise CalculatorError("result too large")
    return Fraction(math.perm(n, k))


def _gcd(*args: Number) -> Fraction:
    return Fraction(math.gcd(*(_integer(a, "gcd") for a in args)))


def _lcm(*args: Number) -> Fraction:
    return Fraction(math.lcm(*(_integer(a, "lcm") for a in args)))


def _mod(a: Number, b: Number) -> Number:
    if b == 0:
        raise CalculatorError("division by zero (modulo by zero)")
    return a % b


def _float_function(func: Callable[[float], float]) -> Callable[[Number], float]:
    def apply(x: Number) -> float:
        try:
            return func(_as_float(x))
        except OverflowError:
            raise CalculatorError("result too large (overflow)") from None
        except ValueError:
            raise CalculatorError("math domain error") from None

    return apply


def _floor(x: Number) -> Fraction:
    return Fraction(math.floor(x))


def _ceil(x: Number) -> Fraction:
    return Fraction(math.ceil(x))


#: name -> (function, minimum number of arguments, maximum number of arguments or None)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "sqrt": (_sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (min, 1, None),
    "max": (max, 1, None),
    "floor": (_floor, 1, 1),
    "ceil": (_ceil, 1, 1),
    "log": (_log, 1, 2),
    "ln": (_log, 1, 1),
    "log10": (lambda x: _log(x, Fraction(10)), 1, 1),
    "log2": (lambda x: _log(x, Fraction(2)), 1, 1),
    "exp": (_float_function(math.exp), 1, 1),
    "sin": (_float_function(math.sin), 1, 1),
    "cos": (_float_function(math.cos), 1, 1),
    "tan": (_float_function(math.tan), 1, 1),
    "asin": (_float_function(math.asin), 1, 1),
    "acos": (_float_function(math.acos), 1, 1),
    "atan": (_float_function(math.atan), 1, 1),
    "radians": (_float_function(math.radians), 1, 1),
    "degrees": (_float_function(math.degrees), 1, 1),
    "factorial": (_factorial, 1, 1),
    "gcd": (_gcd, 1, None),
    "lcm": (_lcm, 1, None),
    "comb": (_comb, 2, 2),
    "perm": (_perm, 1, 2),
    "mod": (_mod, 2, 2),
}

CONSTANTS: dict[str, Number] = {"pi": math.pi, "e": math.e, "tau": math.tau}

# ---- evaluation ------------------------------------------------------------------------------------

_NODE_NAMES = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Compare: "comparisons",
    ast.BoolOp: "and/or",
    ast.IfExp: "conditional expressions",
    ast.Tuple: "tuples (did you mean a function call, or a thousands separator like 1,234?)",
    ast.List: "lists",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.NamedExpr: "assignment",
    ast.JoinedStr: "strings",
    ast.Starred: "starred arguments",
    ast.Await: "await",
}


class _Evaluator:
    def __init__(self, source: str) -> None:
        self.source = source

    def eval(self, node: ast.AST) -> Number:
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
            value = self.eval(node.operand)
            return value if isinstance(node.op, ast.UAdd) else -value
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in FUNCTIONS:
                raise CalculatorError(f"{node.id} is a function: write {node.id}(...)")
            raise CalculatorError(f"unknown name {node.id!r} ({_known_names()})")
        if isinstance(node, ast.Call):
            return self.call(node)
        what = _NODE_NAMES.get(type(node), type(node).__name__)
        raise CalculatorError(f"unsupported syntax: {what}")

    def constant(self, node: ast.Constant) -> Number:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            if isinstance(value, complex):
                raise CalculatorError("complex numbers are not supported")
            raise CalculatorError(f"unsupported value {value!r}: only numbers")
        if isinstance(value, int):
            return _check(Fraction(value))
        # Floats are read exactly from their text: 0.1 is 1/10.
        text = ast.get_source_segment(self.source, node) or repr(value)
        match = re.fullmatch(r"([0-9_]*\.?[0-9_]*)(?:[eE]([+-]?[0-9_]+))?", text)
        if match is None:
            return _check(value)
        if match.group(2) and abs(int(match.group(2).replace("_", ""))) > MAX_LITERAL_EXPONENT:
            raise CalculatorError(f"number too large: {text}")
        return _check(Fraction(text.replace("_", "")))

    def binop(self, node: ast.BinOp) -> Number:
        left, right = self.eval(node.left), self.eval(node.right)
        op = node.op
        try:
            if isinstance(op, ast.Add):
                result = left + right
            elif isinstance(op, ast.Sub):
                result = left - right
            elif isinstance(op, ast.Mult):
                result = left * right
            elif isinstance(op, ast.Div):
                if right == 0:
                    raise CalculatorError("division by zero")
                result = left / right
            elif isinstance(op, ast.FloorDiv):
                if right == 0:
                    raise CalculatorError("division by zero")
                result = Fraction(math.floor(left / right))
            elif isinstance(op, ast.Mod):
                result = _mod(left, right)
            elif isinstance(op, ast.Pow):
                result = _power(left, right)
            else:
                symbol = {ast.BitXor: "^", ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<", ast.RShift: ">>"}
                raise CalculatorError(f"unsupported operator {symbol.get(type(op), type(op).__name__)}")
        except OverflowError:
            raise CalculatorError("result too large (overflow)") from None
        return _check(result)

    def call(self, node: ast.Call) -> Number:
        if isinstance(node.func, ast.Constant | ast.BinOp | ast.UnaryOp | ast.Call):
            raise CalculatorError("implicit multiplication is not supported: write 2*(3+4), not 2(3+4)")
        if not isinstance(node.func, ast.Name):
            raise CalculatorError("unsupported syntax: only calls of the calculator's functions")
        name = node.func.id
        if name not in FUNCTIONS:
            raise CalculatorError(f"unknown function {name!r} ({_known_names()})")
        if node.keywords:
            raise CalculatorError(f"{name}() takes no keyword arguments")
        func, low, high = FUNCTIONS[name]
        args = [self.eval(arg) for arg in node.args]
        if len(args) < low or (high is not None and len(args) > high):
            expected = str(low) if low == high else f"{low} to {high}" if high else f"at least {low}"
            raise CalculatorError(f"{name}() takes {expected} argument(s), got {len(args)}")
        try:
            result = func(*args)
        except OverflowError:
            raise CalculatorError("result too large (overflow)") from None
        except ValueError as exc:
            raise CalculatorError(f"math domain error in {name}(): {exc}") from None
        return _check(result)


def _known_names() -> str:
    return "functions: " + ", ".join(FUNCTIONS) + "; constants: " + ", ".join(CONSTANTS)


# ---- input normalisation ----------------------------------------------------------------------------

_REPLACEMENTS = {
    "×": "*",
    "·": "*",
    "∗": "*",
    "⋅": "*",
    "÷": "/",
    "∕": "/",
    "−": "-",
    "–": "-",
    "—": "-",
    "π": "pi",
    "^": "**",
    "$": "",
    "€": "",
    "£": "",
    "¥": "",
    "\u00a0": " ",
    "\u202f": " ",
}
_THOUSANDS = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w.])")
_PERCENT = re.compile(r"%(?=\s*(?:$|[)+\-*/,=]|of\b))")
_TIMES_X = re.compile(r"(?<=[\d)])\s+[xX]\s+(?=[\d(])")
_SQRT_NUMBER = re.compile(r"√\s*(\d+(?:\.\d+)?)")
_POSTFIX_FACTORIAL = re.compile(r"(?<![\w.])(\d+)\s*!(?!=)")


def _inside_call(text: str, position: int) -> bool:
    """Whether ``position`` is directly inside the parentheses of a function call."""
    stack: list[bool] = []
    for i, char in enumerate(text[:position]):
        if char == "(":
            before = text[:i].rstrip()
            stack.append(bool(before) and (before[-1].isalnum() or before[-1] == "_"))
        elif char == ")" and stack:
            stack.pop()
    return bool(stack) and stack[-1]


def _normalise(expression: str) -> str:
    text = expression.strip()
    for old, new in _REPLACEMENTS.items():
        text = text.replace(old, new)
    text = _SQRT_NUMBER.sub(r"sqrt(\1)", text).replace("√", "sqrt")
    text = text.rstrip().rstrip("=").rstrip()
    text = _THOUSANDS.sub(lambda m: m.group(0) if _inside_call(text, m.start()) else m.group(0).replace(",", ""), text)
    text = _PERCENT.sub("/100", text)
    text = re.sub(r"/100\s*of\b", "/100*", text)
    text = _TIMES_X.sub(" * ", text)
    text = _POSTFIX_FACTORIAL.sub(r"factorial(\1)", text)
    return text


def evaluate(expression: str) -> str:
    """Evaluate an arithmetic expression safely; the result, or a string starting with ``"error:"``."""
    try:
        if not isinstance(expression, str):
            raise CalculatorError("the expression must be a string")
        if len(expression) > MAX_LENGTH:
            raise CalculatorError(f"expression too long ({len(expression)} > {MAX_LENGTH} characters)")
        text = _normalise(expression)
        if not text:
            raise CalculatorError("empty expression")
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            where = f" at character {exc.offset}" if exc.offset else ""
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise CalculatorError(f"invalid expression ({exc.msg}){where}: {shown!r}") from None
        return _format(_Evaluator(text).eval(tree))
    except CalculatorError as exc:
        return f"error: {exc}"
    except ZeroDivisionError:
        return "error: division by zero"
    except (OverflowError, MemoryError):
        return "error: result too large"
    except RecursionError:
        return "error: expression too deeply nested"
    except Exception as exc:  # never raise to the caller: the message goes back to the LLM
        return f"error: {type(exc).__name__}: {exc}"


# ---- output ------------------------------------------------------------------------------------------


def _format(value: Number) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{SIGNIFICANT_DIGITS}g}"
    if value.denominator == 1:
        return str(value.numerator)
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    decimals = max(twos, fives)
    if denominator == 1 and decimals <= MAX_EXACT_DECIMALS:  # a terminating decimal: exact
        scaled = abs(value.numerator) * 10**decimals // value.denominator
        digits = str(scaled).rjust(decimals + 1, "0")
        sign = "-" if value < 0 else ""
        return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"
    with localcontext() as ctx:
        ctx.prec = SIGNIFICANT_DIGITS + 10
        quotient = Decimal(value.numerator) / Decimal(value.denominator)
    return _strip_exponent(format(quotient, f".{SIGNIFICANT_DIGITS}g"))


def _strip_exponent(text: str) -> str:
    """``'3.33333333333E+19'`` -> ``'3.33333333333e+19'`` (Python's float style)."""
    return text.replace("E", "e")
