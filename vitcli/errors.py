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
        source = self.source if cli else python_source(self.source)
        return f"{quote_name(source)}: {one_line(problem if cli else python_spelling(problem))}"

    def __str__(self) -> str:
        return self.render()


# Options whose Python keyword is not the shell's name with '_' for '-' (short options by their letter).
API_NAMES = {"weights": "spec", "o": "output", "r": "recursive", "with": "with_model", "cls": "class_token"}
# Keyword → the words it chooses among (registered beside the Literals they come from, `register_choices`): a
# message's '--stage layers' is the option with its value, while '--layer and --head' are two options.
CHOICES: dict[str, frozenset[str]] = {}
FLAGS: set[str] = set()  # keywords that are True or False: a bare '--online' is 'online=True' (`register_flags`)
# '--no-strict', '--kind=rope', '--output-dir DIR' (a capitalised metavar), '--top 5', "--labels 'a,b'",
# '--stage layers' (a word the option chooses among), '--overlay'
_OPTION = re.compile(r"(?<![\w-])(?:--(no-)?([a-z][a-z0-9-]*)|-([or])\b)"
                     r"(?:=([\w.-]+)|( (?:[A-Z][A-Za-z]*|N)\b)|( (?:'[^']*'|-?\d[\w.]*|[a-z][\w.:-]*)))?")
_WITH_VALUE = re.compile(r"(--?[a-z][a-z0-9-]*) (\S.*)")  # a source such as '--target image:cat.jpg' or '-o -'


def register_choices(**choices: tuple[str, ...]) -> None:
    """Tell messages which words are an option's values (`stage=('patches', …)`), so that Python callers read
    "stage='layers'" where the shell reads '--stage layers'."""
    CHOICES.update({name: frozenset(words) for name, words in choices.items()})


def register_flags(*names: str) -> None:
    """Tell messages which keywords are True or False, so that a bare '--online' reads 'online=True' in Python."""
    FLAGS.update(names)


def python_name(option: str) -> str:
    """A shell option's name (no dashes) as its Python keyword: 'output-dir' → 'output_dir'."""
    return API_NAMES.get(option, option.replace("-", "_"))


def python_source(source: str) -> str:
    """An error's source as Python callers name it: an option by its keyword ('--output-dir' → 'output_dir'),
    an option with its value as the keyword's text ('--target image:cat.jpg' → "target='image:cat.jpg'");
    a file name as it is."""
    option = _OPTION.fullmatch(source)
    if option and " " not in source:  # '--no-norm' is the keyword norm
        return python_name(option[2] or option[3])
    given = _WITH_VALUE.fullmatch(source)
    return f"{python_name(given[1].lstrip('-'))}={given[2]!r}" if given else source


def _python_value(text: str) -> str:
    """A value from a message as Python writes it: numbers as they are, words and quoted text as str."""
    if text.lstrip("-").replace(".", "", 1).isdigit():
        return text
    return repr(text[1:-1]) if len(text) > 1 and text[0] == text[-1] == "'" else repr(text)


def python_spelling(problem: str) -> str:
    """A problem's shell options as Python keywords: '--output-dir DIR' → 'output_dir=DIR', '--no-strict' →
    'strict=False', '--kind=rope' → "kind='rope'", '--stage layers' → "stage='layers'", '--top 5' → 'top=5',
    '--online' → 'online=True' (a flag), '--overlay' → 'overlay='. The one place messages change front end, so
    that lower layers write each message once."""

    def spell(m: re.Match) -> str:
        negated, long_name, short, value, metavar, word = m.groups()
        name = python_name(long_name or short)
        if negated:
            return f"{name}=False{word or metavar or ''}"
        if value is not None:
            return f"{name}={_python_value(value)}"
        if word is not None:
            text = word[1:]
            if text[0] == "'" or text.lstrip("-").replace(".", "", 1).isdigit() or text in CHOICES.get(name, ()):
                return f"{name}={_python_value(text)}"
            return f"{name}={'True' if name in FLAGS else ''}{word}"  # a word of the sentence: 'overlay= and …'
        return f"{name}={metavar.strip() if metavar else 'True' if name in FLAGS else ''}"

    return _OPTION.sub(spell, problem)


class UsageError(VitcliError):
    """An option this run ignores (or that cannot go with the others): one line, and exit code 2 in the CLI."""


def quote_name(name: str) -> str:
    """A file name as messages show it: itself, or repr-quoted when it is empty or holds a newline, a control
    character or a byte that was not UTF-8 (a surrogate), so that every message stays one line."""
    return name if name and name.isprintable() else repr(name)


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
