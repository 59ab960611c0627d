"""Export an agent graph as a standalone ``agent.py``: readable DSPy code that runs with only ``dspy`` installed.

The file holds one ``dspy.Module`` for the graph (``Agent``: its nodes with their instructions, demos,
format and knobs written inline, run in topological order) and the code it runs: the operators the
graph uses, the output format adapters, the answer helpers they call and, for the tools of ``react``
and ``program_of_thought``, the calculator and the sandbox. That code is not rewritten by hand: it is
copied verbatim, definition by definition, from agentsearch's own modules (what a definition refers to
is followed through the modules' imports), so the exported agent runs exactly the operators the search
measured. :mod:`agentsearch.runs.standalone_runtime` adds the node record the operators read, the LM
setup and the command line (``python agent.py QUESTION --model M --api-base URL``).

``Agent`` has the same named predictors as agentsearch's compiled program, so the export's
``program.json`` loads into it (``--state``); the instructions and demos are already inline.

An operator whose code needs more than the standard library, DSPy, pydantic and json-repair (DSPy's
own dependencies) cannot be exported: :class:`ExportError` says which, never a silently different agent.
"""

from __future__ import annotations

import ast
import importlib.util
import keyword
import re
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentsearch.errors import UserError
from agentsearch.search_space.graph import ENTRY, AgentGraph

RUNTIME = "agentsearch.runs.standalone_runtime"
#: agentsearch modules whose definitions may be copied into agent.py (they need only DSPy and the stdlib).
COPYABLE = (
    "agentsearch.evaluators.operators.",
    "agentsearch.evaluators.answers",
    "agentsearch.evaluators.tools.",
    "agentsearch.search_space.operators",
    RUNTIME,
)
#: agentsearch definitions agent.py replaces with the runtime's smaller records.
REPLACED = {
    ("agentsearch.search_space.graph", "NodeConfig"): (RUNTIME, "NodeConfig"),
    ("agentsearch.search_space.operators", "OperatorSpec"): (RUNTIME, "OperatorSpec"),
}
#: Third-party packages agent.py may import: DSPy and what installing DSPy installs with it.
THIRD_PARTY = frozenset({"dspy", "pydantic", "json_repair"})
DSPY_REQUIREMENT = "dspy==3.4.1"


class ExportError(UserError):
    """An agent that cannot be exported as a standalone file (the message says which node and why)."""


@dataclass
class _Def:
    module: str
    name: str
    stmt: ast.stmt
    source: str
    deps: set[tuple[str, str]] = field(default_factory=set)  # (module, name) of copied definitions
    imports: set[tuple[str, str, str]] = field(default_factory=set)  # (module, name or "", bound name)


class _Module:
    """One source module, parsed: its top-level definitions and imports."""

    def __init__(self, name: str):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:  # pragma: no cover - our own modules always have a file
            raise ExportError(f"cannot find the source of {name}")
        self.name = name
        self.path = Path(spec.origin)
        self.text = self.path.read_text(encoding="utf-8")
        self.lines = self.text.splitlines()
        self.tree = ast.parse(self.text)
        first = " ".join((ast.get_docstring(self.tree) or "").split("\n\n")[0].split())
        self.doc = first.split(". ")[0].rstrip(".")  # its first sentence, for the section's heading
        self.defs: dict[str, ast.stmt] = {}
        self.imports: dict[str, tuple[str, str]] = {}  # bound name -> (module, name or "" for `import m`)
        for stmt in self.tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.defs[stmt.name] = stmt
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    for node in ast.walk(target):
                        if isinstance(node, ast.Name):
                            self.defs[node.id] = stmt
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                self.defs[stmt.target.id] = stmt
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    self.imports[bound] = (alias.name if alias.asname else bound, "")
            elif isinstance(stmt, ast.ImportFrom) and stmt.module != "__future__":
                module = _absolute(self.name, stmt.module, stmt.level)
                for alias in stmt.names:
                    self.imports[alias.asname or alias.name] = (module, alias.name)

    def segment(self, stmt: ast.stmt) -> tuple[str, list[ast.ImportFrom]]:
        """The statement's source (decorators and comments kept) without its function-local agentsearch
        imports, which are returned: what they import is copied as top-level definitions instead."""
        decorators = getattr(stmt, "decorator_list", [])
        start = min([stmt.lineno, *(d.lineno for d in decorators)])
        end = stmt.end_lineno or stmt.lineno
        local = [
            node
            for node in ast.walk(stmt)
            if node is not stmt
            and isinstance(node, ast.ImportFrom)
            and _absolute(self.name, node.module, node.level).startswith("agentsearch")
        ]
        dropped = {line for node in local for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)}
        kept = [self.lines[i - 1] for i in range(start, end + 1) if i not in dropped]
        return "\n".join(kept), local


def _absolute(package_module: str, module: str | None, level: int) -> str:
    if not level:
        return module or ""
    base = package_module.split(".")[:-level]
    return ".".join([*base, module] if module else base)


def _copyable(module: str) -> bool:
    return any(module == p.rstrip(".") or module.startswith(p) for p in COPYABLE)


def _third_party_ok(module: str) -> bool:
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top in THIRD_PARTY or top == "__future__"


class _Collector:
    """Follows the definitions agent.py needs, from the roots, through every name they refer to."""

    def __init__(self, what: str):
        self.what = what  # for error messages: the node or part being exported
        self.modules: dict[str, _Module] = {}
        self.defs: dict[tuple[str, str], _Def] = {}

    def module(self, name: str) -> _Module:
        if name not in self.modules:
            self.modules[name] = _Module(name)
        return self.modules[name]

    def resolve(self, module: str, name: str) -> tuple[str, str]:
        """Where ``name`` as seen from ``module`` is defined (following agentsearch imports)."""
        seen = set()
        while (module, name) not in seen:
            seen.add((module, name))
            if (module, name) in REPLACED:
                return REPLACED[(module, name)]
            if not _copyable(module):
                raise ExportError(f"{self.what}: needs {module}.{name}, which agent.py cannot carry")
            mod = self.module(module)
            if name in mod.defs:
                return module, name
            if name in mod.imports and mod.imports[name][0].startswith("agentsearch"):
                module, name = mod.imports[name]
                continue
            break
        raise ExportError(f"{self.what}: cannot find the definition of {name} in {module}")  # pragma: no cover

    def add(self, module: str, name: str) -> tuple[str, str]:
        key = self.resolve(module, name)
        if key in self.defs:
            return key
        mod = self.module(key[0])
        stmt = mod.defs[key[1]]
        source, local_imports = mod.segment(stmt)
        entry = _Def(key[0], key[1], stmt, source)
        self.defs[key] = entry
        for other in self.defs.values():  # one assignment may bind several names: copy it once
            if other is not entry and other.stmt is stmt:
                entry.source = ""
        locals_from = {}
        for node in local_imports:
            target = _absolute(mod.name, node.module, node.level)
            for alias in node.names:
                locals_from[alias.asname or alias.name] = (target, alias.name)
        for node in ast.walk(stmt):
            if isinstance(node, ast.Import | ast.ImportFrom) and node not in local_imports:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for imported in names:
                    if node is not stmt and not _third_party_ok(imported):
                        raise ExportError(f"{self.what}: {key[1]} imports {imported}, which dspy does not install")
        for used in sorted(_names(stmt)):
            if used in locals_from:
                entry.deps.add(self.add(*locals_from[used]))
            elif used in mod.defs and used != key[1]:
                entry.deps.add(self.add(mod.name, used))
            elif used in mod.imports:
                target, orig = mod.imports[used]
                if target.startswith("agentsearch"):
                    entry.deps.add(self.add(target, orig))
                elif not _third_party_ok(target):
                    raise ExportError(f"{self.what}: {key[1]} needs the package {target}, which dspy does not install")
                else:
                    entry.imports.add((target, orig, used))
        return key

    def ordered(self) -> list[_Def]:
        """Definitions in an order Python can execute: modules after the modules they use, each module's
        definitions in their source order."""
        uses: dict[str, set[str]] = {m: set() for m in dict.fromkeys(k[0] for k in self.defs)}
        for d in self.defs.values():
            for dep in d.deps:
                if dep[0] != d.module:
                    uses[d.module].add(dep[0])
        order: list[str] = []
        visiting: set[str] = set()

        def visit(m: str) -> None:
            if m in order or m in visiting:
                return
            visiting.add(m)
            for dep in sorted(uses[m], key=list(uses).index):
                visit(dep)
            visiting.discard(m)
            order.append(m)

        for m in uses:
            visit(m)
        return sorted(self.defs.values(), key=lambda d: (order.index(d.module), d.stmt.lineno))


def _names(stmt: ast.stmt) -> set[str]:
    """Every name a definition reads (annotations included: the file stays readable and checkable)."""
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _identifier(node_id: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", node_id)
    name = base if base.isidentifier() and not keyword.iskeyword(base) else f"node_{base}"
    if name in {"question", "self", "dspy"} or name in taken:
        name = f"{name}_out"
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _literal(value: Any, indent: str = "") -> str:
    """A params value as Python source; a multi-line string as one literal per line, in parentheses."""
    if isinstance(value, str) and "\n" in value.strip("\n"):
        lines = value.splitlines(keepends=True)
        return "(\n" + "".join(f"{indent}    {line!r}\n" for line in lines) + f"{indent})"
    return repr(value)


def _params_source(params: Any, indent: str) -> str:
    """``SomeParams(field=value, ...)`` for the fields the graph sets (defaults left out), demos as ``Demo(...)``."""
    cls = type(params).__name__
    data = {k: v for k, v in params.model_dump().items() if v is not None and v != ()}
    if not data:
        return f"{cls}()"
    inner = indent + "    "
    parts = []
    for name, value in data.items():
        if name == "demos":
            demos = []
            for demo in value:
                fields = ", ".join(f"{k}={_literal(v, inner + '    ')}" for k, v in demo.items() if v)
                demos.append(f"{inner}    Demo({fields}),")
            parts.append(f"{inner}demos=(\n" + "\n".join(demos) + f"\n{inner}),")
        elif isinstance(value, tuple | list):
            parts.append(f"{inner}{name}={tuple(value)!r},")
        else:
            parts.append(f"{inner}{name}={_literal(value, inner)},")
    return f"{cls}(\n" + "\n".join(parts) + f"\n{indent})"


def generate_agent(
    graph: AgentGraph,
    answer_kind: str = "text",
    *,
    model: str | None = None,
    api_base: str | None = None,
    title: str | None = None,
) -> str:
    """The source of a standalone ``agent.py`` for ``graph`` (raises :class:`ExportError` when an operator
    cannot be carried). ``answer_kind`` is the benchmark's (``number`` lets the text format read a reply's
    last number as a last resort); ``model`` and ``api_base`` are the defaults of its command line."""
    from agentsearch.evaluators.operators.formats import ANSWER_KINDS
    from agentsearch.evaluators.operators.registry import IMPLEMENTATIONS

    if answer_kind not in ANSWER_KINDS:
        raise ExportError(f"answer kind {answer_kind!r}: expected one of {', '.join(ANSWER_KINDS)}")
    collector = _Collector("agent.py: output formats")
    collector.add("agentsearch.evaluators.operators.formats", "make_adapter")
    for node in graph.nodes:
        collector.what = f"graph '{graph.name}': node '{node.id}' ({node.op})"
        if node.spec.needs_train and not getattr(node.params, "built", False):
            raise ExportError(
                f"{collector.what}: its memory is not built from the train split yet; export the prepared graph "
                "(the one a study stores), not the sampled one"
            )
        impl = IMPLEMENTATIONS.get(node.op)
        if impl is None:  # pragma: no cover - a graph is validated against the same registry
            raise ExportError(f"{collector.what}: no implementation of operator '{node.op}'")
        collector.add(impl.__module__, impl.__name__)
        collector.add(type(node.params).__module__, type(node.params).__name__)
        if getattr(node.params, "demos", ()):
            collector.add("agentsearch.search_space.operators", "Demo")
    collector.what = "agent.py"
    for name in ("NodeConfig", "OperatorSpec", "use_lms", "main"):
        collector.add(RUNTIME, name)
    defs = collector.ordered()

    bound: dict[str, tuple[str, str]] = {}
    for d in defs:
        for target, orig, name in d.imports:
            if bound.setdefault(name, (target, orig)) != (target, orig):
                raise ExportError(f"agent.py: the name {name} is imported from two places ({bound[name]}, {target})")
    by_name: dict[str, _Def] = {}
    for d in defs:
        other = by_name.setdefault(d.name, d)
        if d.name in bound or (other is not d and other.source != d.source):
            raise ExportError(f"agent.py: two definitions named {d.name} ({other.module}, {d.module}): rename one")
        if other is not d:
            d.source = ""  # the same statement in two modules (a logger): copied once

    out = [_header(graph, title, model, api_base), "from __future__ import annotations", ""]
    for third_party in (False, True):  # the standard library's imports, then DSPy's and its dependencies'
        mine = {n: (t, o) for n, (t, o) in bound.items() if (t.split(".")[0] in THIRD_PARTY) == third_party}
        plain = sorted({f"import {t}" if t == n else f"import {t} as {n}" for n, (t, o) in mine.items() if not o})
        froms: dict[str, list[str]] = {}
        for n, (t, o) in mine.items():
            if o:
                froms.setdefault(t, []).append(o if o == n else f"{o} as {n}")
        out += plain + [f"from {t} import {', '.join(sorted(names))}" for t, names in sorted(froms.items())]
        out += [""] if not third_party else []
    module, previous_block = None, False
    for d in defs:
        if not d.source:
            continue
        if d.module != module:
            module = d.module
            doc = collector.module(module).doc
            path = module.replace(".", "/") + ".py"
            out += ["", "", f"# {'-' * 100}", f"# from {path}" + (f": {doc}" if doc else "")]
            previous_block = True
        block = isinstance(d.stmt, ast.FunctionDef | ast.ClassDef)
        if block or previous_block:
            out += ["", ""]
        out.append(d.source)
        previous_block = block
    out += ["", "", f"# {'-' * 100}", "# the agent", "", _agent_class(graph, answer_kind)]
    aliases = sorted(graph.models(), key=lambda a: (a != "default", a))
    out += [
        "",
        "",
        'if __name__ == "__main__":',
        f"    raise SystemExit(main(Agent, aliases={tuple(aliases)!r}, model={model!r}, api_base={api_base!r}))",
        "",
    ]
    source = "\n".join(out)
    try:
        ast.parse(source)
    except SyntaxError as exc:  # pragma: no cover - a bug of this module, never the user's
        raise ExportError(f"agent.py: generated source does not parse: {exc}") from exc
    return source


def _header(graph: AgentGraph, title: str | None, model: str | None, api_base: str | None) -> str:
    run = 'python agent.py "What is 17 * 23?"'
    if model is None:
        run += " --model MODEL --api-base URL"
    yaml_text = textwrap.indent(graph.to_yaml().rstrip(), "    ")
    return (
        f'"""{title or graph.name}: an agent designed by agentsearch, as standalone DSPy code.\n\n'
        f"Runs with only DSPy installed (pip install {DSPY_REQUIREMENT}):\n\n"
        f"    {run}\n\n"
        "--model is the model name at --api-base, an OpenAI-compatible endpoint (vLLM, llama.cpp, agentsearch's\n"
        "`main.py serve`), or a LiteLLM model string without it; the key comes from $AGENTSEARCH_API_KEY or\n"
        '$OPENAI_API_KEY (or --api-key-env NAME), never from this file. In Python: ``Agent(lms={"default": lm})``\n'
        "or ``dspy.configure(lm=lm); Agent()(question=...)`` gives ``Prediction(answer, reasoning)``.\n\n"
        "Below: the operators, formats and answer helpers the graph uses, copied from agentsearch's modules\n"
        "(each section names its file), then ``Agent``, the graph as one ``dspy.Module``. The graph:\n\n"
        f"{yaml_text}\n"
        '"""\n'
    )


def _agent_class(graph: AgentGraph, answer_kind: str) -> str:
    from agentsearch.evaluators.operators.registry import IMPLEMENTATIONS

    taken: set[str] = set()
    var = {node.id: _identifier(node.id, taken) for node in graph.nodes}
    lines = [
        "class Agent(dspy.Module):",
        f'    """{_doc_line(graph)}"""',
        "",
        f"    answer_kind = {answer_kind!r}  # 'number': the text format may read a reply's last number",
        "",
        "    def __init__(self, lms: dict[str, dspy.BaseLM] | None = None):",
        '        """``lms`` maps the nodes\' model aliases to LMs (None: DSPy\'s configured LM)."""',
        "        super().__init__()",
        "        self.nodes = {",
    ]
    for node in graph.nodes:
        impl = IMPLEMENTATIONS[node.op].__name__
        spec = f"OperatorSpec({node.op!r}, default_instruction={_literal(node.spec.default_instruction, ' ' * 20)})"
        lines += [
            f"            {node.id!r}: {impl}(",
            "                NodeConfig(",
            f"                    id={node.id!r},",
            f"                    op={node.op!r},",
            f"                    params={_params_source(node.params, ' ' * 20)},",
            f"                    spec={spec},",
        ]
        if tuple(node.inputs) != (ENTRY,):
            lines.append(f"                    inputs={tuple(node.inputs)!r},")
        lines += ["                )", "            ),"]
    lines += [
        "        }",
        "        use_lms(self.nodes, lms)",
        "",
        "    def forward(self, question: str) -> dspy.Prediction:",
    ]
    for generation in graph.topological_generations():
        for node_id in generation:
            node = graph.node(node_id)
            upstream = ", ".join(var[u] for u in node.upstream)
            fmt = getattr(node.params, "format", None)
            call = f"self.nodes[{node_id!r}](question=question, upstream=[{upstream}])"
            if fmt is None:
                lines.append(f"        {var[node_id]} = {call}")
            else:
                lines += [
                    f"        with dspy.context(adapter=make_adapter({fmt!r}, self.answer_kind)):",
                    f"            {var[node_id]} = {call}",
                ]
    final = var[graph.output]
    lines.append(f"        return dspy.Prediction(answer={final}.answer, reasoning={final}.reasoning)")
    return "\n".join(lines)


def _doc_line(graph: AgentGraph) -> str:
    text = graph.summary().replace('"""', "'''").replace("\\", "\\\\")
    return f"The agent graph '{graph.name}': {text}"


def write_agent(
    out_dir: str | Path,
    graph: AgentGraph,
    answer_kind: str = "text",
    *,
    model_flags: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> Path:
    """Write ``agent.py`` (and ``requirements.txt``) into ``out_dir``; the command-line defaults are the
    study's endpoint when it used one (``model_flags``: what the study stored), never a key."""
    model, api_base = endpoint_defaults(model_flags or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "agent.py"
    path.write_text(generate_agent(graph, answer_kind, model=model, api_base=api_base, title=title), encoding="utf-8")
    (out / "requirements.txt").write_text(DSPY_REQUIREMENT + "\n", encoding="utf-8")
    return path


def endpoint_defaults(flags: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The model and endpoint the study ran on, when it was one endpoint given by flags (not the embedded model
    agentsearch starts itself, nor a run config's several aliases)."""
    model = flags.get("model")
    bases: Iterable[str] = flags.get("api_base") or ()
    bases = list(bases)
    if flags.get("config") or not model or model == "local" or str(model).startswith("vllm:") or not bases:
        return None, None
    return str(model), bases[0]
