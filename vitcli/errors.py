"""The one error type that front ends turn into a single line (the CLI: and exit code 1).

Lower layers name options the CLI way (`--native-size`) and say which override would supply what
weights cannot show (`needs="heads"`, written `{needs}` in the problem); each front end spells
them its own way: the CLI `--heads N`, the Python API `heads=N`.
"""

# How each front end writes an override that a problem asks for.
CLI_SPELLING = {"heads": "--heads N", "native_size": "--native-size HxW", "eps": "--eps EPS",
                "activation": "--activation NAME", "family": "--family NAME", "strict": "--no-strict",
                "max_memory": "--max-memory SIZE"}
API_SPELLING = {"heads": "heads=N", "native_size": "native_size=(H, W)", "eps": "eps=EPS",
                "activation": "activation='gelu'", "family": "family='timm'", "strict": "strict=False",
                "max_memory": "max_memory='16G'"}


class VitcliError(Exception):
    """A bad input or failed check: `source` names the file (or option), `problem` says what is wrong.

    `needs` is the override (a `load_model` keyword) that would fix it; `{needs}` in `problem`
    stands for its spelling. str() is the Python spelling; the CLI calls `render(cli=True)`.
    """

    def __init__(self, source: str, problem: str, needs: str | None = None) -> None:
        self.source, self.problem, self.needs = source, problem, needs
        super().__init__(self.render())

    def render(self, cli: bool = False) -> str:
        """'SOURCE: problem' with options and overrides spelled for the CLI or for Python."""
        spelling = CLI_SPELLING if cli else API_SPELLING
        problem = self.problem.replace("{needs}", spelling.get(self.needs or "", self.needs or ""))
        source = self.source if cli or not self.source.startswith("--") else self.source[2:].replace("-", "_")
        return f"{quote_name(source)}: {one_line(problem)}"

    def __str__(self) -> str:
        return self.render()


class UsageError(VitcliError):
    """An option this run ignores (or that cannot go with the others): one line, and exit code 2 in the CLI."""


def quote_name(name: str) -> str:
    """A file name as messages show it: itself, or repr-quoted when it holds a newline, a control
    character or a byte that was not UTF-8 (a surrogate), so that every message stays one line."""
    return name if name.isprintable() else repr(name)


def one_line(text: str) -> str:
    """A problem's words with control characters escaped (a file name inside them included)."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def option_errors(option: str):
    """A context in which the core's ValueError becomes the one-line VitcliError naming `option`."""
    from contextlib import contextmanager

    @contextmanager
    def guard():
        try:
            yield
        except ValueError as e:
            raise VitcliError(option, str(e)) from None

    return guard()
