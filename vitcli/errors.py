"""The one error type that front ends turn into a single line (the CLI: and exit code 1).

Lower layers name options the CLI way (`--native-size`) and say which override would supply what
weights cannot show (`needs="heads"`, written `{needs}` in the problem); each front end spells
them its own way: the CLI `--heads N`, the Python API `heads=N`.
"""

import re

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
        source = python_name(self.source.lstrip("-")) if not cli and _OPTION.fullmatch(self.source) else self.source
        return f"{quote_name(source)}: {one_line(problem if cli else python_spelling(problem))}"

    def __str__(self) -> str:
        return self.render()


# Options whose Python keyword is not the shell's name with '_' for '-' (short options by their letter).
API_NAMES = {"weights": "spec", "o": "output", "with": "with_model"}
# '--no-strict', '--kind=rope', '--output-dir DIR' (a capitalised metavar), '--overlay'
_OPTION = re.compile(r"(?<![\w-])(?:--(no-)?([a-z][a-z0-9-]*)|-(o)\b)(?:=([\w.-]+)|( (?:[A-Z][A-Za-z]*|N)\b))?")


def python_name(option: str) -> str:
    """A shell option's name (no dashes) as its Python keyword: 'output-dir' → 'output_dir'."""
    return API_NAMES.get(option, option.replace("-", "_"))


def python_spelling(problem: str) -> str:
    """A problem's shell options as Python keywords: '--output-dir DIR' → 'output_dir=DIR', '--no-strict' →
    'strict=False', '--kind=rope' → "kind='rope'", '--overlay' → 'overlay='. The one place messages change
    front end, so that lower layers write each message once."""

    def spell(m: re.Match) -> str:
        negated, long_name, short, value, metavar = m.groups()
        name = long_name or short
        if negated:
            return f"{python_name(name)}=False"
        if value is not None:
            return f"{python_name(name)}={value if value.lstrip('-').replace('.', '').isdigit() else repr(value)}"
        return f"{python_name(name)}={metavar.strip() if metavar else ''}"

    return _OPTION.sub(spell, problem)


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
