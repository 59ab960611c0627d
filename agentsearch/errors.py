"""User-facing errors.

Every error caused by bad input (a config, a graph, a dataset, a CLI flag, an endpoint that cannot
be reached) is a :class:`UserError`. The CLI prints its message on one line and exits with code 2,
without a traceback, so messages must name the file, line, node or field at fault.
"""


class UserError(Exception):
    """Bad input from the user; the message is one line naming what is wrong and where."""

    exit_code = 2


class GraphError(UserError):
    """An agent graph file or config is invalid."""


class DataError(UserError):
    """A benchmark or dataset cannot be loaded."""


class EndpointError(UserError):
    """An LLM endpoint cannot be reached or answers with something unusable."""


class ProposerError(UserError):
    """An LLM-driven strategy's proposer failed every time it was asked (the study is saved)."""
