"""The one error type that the CLI turns into a single line and exit code 1."""


class VitcliError(Exception):
    """A bad input or failed check: `source` names the file (or option), `problem` says what is wrong."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem
