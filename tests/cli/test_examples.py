"""Every example runs as written: each ```bash and ```python block of the README and of docs/, and each
`--help` example, in an empty folder holding only a copy of sample_images/ (checkpoints are made by the
examples' own timm / transformers lines). After each `vitcli` line every file it names as an output
exists, and a `.npy` whose line ends in a shape comment `# (a, b)` has that shape; a Python line
`EXPR.shape  # (a, b)` is checked as an assertion.

The fast tests check, without running anything, that examples name only shipped files or files an
earlier line makes; the runs themselves are marked `slow`."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLES

ROOT = SAMPLES.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OUTPUT_OPTIONS = ("-o", "--output", "--png", "--overlay", "--grid-png", "--similarity", "--plot-distance",
                  "--distance", "--masks", "--rollout", "--cosine", "--save-qkv", "--output-dir", "--plot")


def blocks(page: Path) -> list[tuple[str, str]]:
    """The page's (language, text) code blocks that are examples: ```bash and ```python."""
    return re.findall(r"^ *```(bash|python)\n(.*?)^ *```", page.read_text(), re.DOTALL | re.MULTILINE)


def shell_lines(text: str) -> list[str]:
    """A bash block's commands: continuations joined, blank and comment lines dropped, `pip` skipped."""
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "pip "))]


def command(line: str) -> str:
    """The line without its trailing comment."""
    return re.sub(r"\s+#\s.*$", "", line)


def outputs(line: str) -> list[str]:
    """The files a vitcli line names as outputs (not `-`)."""
    words = vitcli_words(line)
    return [w for opt, w in pairwise(words) if opt in OUTPUT_OPTIONS and w != "-"]


def promised_shape(line: str) -> tuple[int, ...] | None:
    """The shape a line's comment promises, as `# (a, b)` right after the command."""
    m = re.search(r"\s#\s*(\([\d, ]+\))", line)
    return tuple(int(x) for x in m.group(1).strip("()").split(",") if x.strip()) if m else None


def page_examples() -> list[tuple[str, str, str]]:
    """(page, language, block) for every example block of README and docs/."""
    return [(p.relative_to(ROOT).as_posix(), lang, text) for p in PAGES for lang, text in blocks(p)]


def help_examples() -> dict[str, list[str]]:
    """Each command's --help examples."""
    from vitcli.cli import attend, compare, embed, explain, figures, info, patchify, posenc, probe, text, view

    lists = {"patchify": patchify.EXAMPLES, "embed": embed.EXAMPLES, "attend": attend.EXAMPLES,
             "posenc": posenc.EXAMPLES, "info": info.EXAMPLES, "figures": figures.EXAMPLES,
             "explain": explain.EXAMPLES, "view": view.EXAMPLES, "classify": text.EXAMPLES,
             "compare": compare.EXAMPLES, "probe": probe.EXAMPLES}
    lists.update({f"figures {n.lower()}": getattr(figures, f"{n}_EXAMPLES") for n in ("FILTERS", "PCA", "SIMILAR", "NORMS")})
    return lists


def vitcli_words(line: str) -> list[str]:
    """The words of the line's `vitcli` command (of a pipe, the part that runs vitcli)."""
    parts = [shlex.split(part) for part in command(line).split("|")]
    return next((words for words in parts if words[:1] == ["vitcli"]), [])


def named_inputs(line: str) -> list[str]:
    """The image and checkpoint files a line reads: image paths or globs, --weights, --to, image: targets."""
    words = vitcli_words(line)
    found = [w for w in words if re.search(r"\.(jpe?g|png)$", w, re.IGNORECASE) and not w.startswith(("-", "image:"))]
    found = [w for prev, w in pairwise(["", *words]) if w in found and prev not in OUTPUT_OPTIONS]
    found += [w for opt, w in pairwise(words) if opt in ("--weights", "--to")]
    found += [w.split(":", 1)[1] for w in words if w.startswith("image:")]
    return found


def check_names(lines: list[str]) -> list[str]:
    """Inputs that are neither shipped nor made by an earlier line of the same list."""
    made: set[str] = set()
    missing = []
    for line in lines:
        for name in named_inputs(line):
            shipped = name.startswith("sample_images/") and any(ROOT.glob(name))
            if not shipped and name.rstrip("/") not in made:
                missing.append(f"{name} in: {line}")
        made.update(o.rstrip("/") for o in outputs(line))
        made.update(re.findall(r"'([\w.-]+\.safetensors)'", line) + re.findall(r"save_pretrained\('([\w.-]+)'\)", line)
                    + re.findall(r"makedirs\('([\w.-]+)'", line))
    return missing


def test_examples_exist_and_cover_every_command():
    pages = {page for page, _, _ in page_examples()}
    assert {"README.md", "docs/commands.md", "docs/python-api.md", "docs/view.md"} <= pages
    text = "\n".join(t for _, lang, t in page_examples() if lang == "bash")
    for cmd in ("patchify", "embed", "posenc", "attend", "explain", "view", "figures", "info", "classify", "compare",
                "probe"):
        assert f"vitcli {cmd} " in text, cmd


@pytest.mark.parametrize("page", sorted({p for p, _, _ in page_examples()}))
def test_page_examples_name_shipped_files(page):
    lines = [line for p, lang, t in page_examples() if p == page and lang == "bash" for line in shell_lines(t)]
    assert not check_names(lines), check_names(lines)


def test_help_examples_name_shipped_files():
    for name, lines in help_examples().items():
        assert lines, name
        assert all(line.startswith(("vitcli ", "python -c ")) for line in lines), name
        assert not check_names(lines), (name, check_names(lines))


@pytest.mark.parametrize("name", ["explain", "view"])
def test_help_examples_one_per_line(name):
    """Each example is a line of its own in --help (they were joined with " · " into one paragraph)."""
    r = subprocess.run([sys.executable, "-m", "vitcli", name, "--help"], capture_output=True, text=True, check=False,
                       env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    shown = [line.strip(" │") for line in r.stdout.splitlines()]
    from vitcli.cli import explain, view

    for example in {"explain": explain.EXAMPLES, "view": view.EXAMPLES}[name]:
        assert example in shown, example
    assert " · " not in r.stdout


# --- the runs ----------------------------------------------------------------------------------------


def fresh_folder(tmp_path: Path) -> Path:
    """An empty folder with a copy of sample_images/ (and nothing else)."""
    shutil.copytree(SAMPLES, tmp_path / "sample_images")
    return tmp_path


def run_line(line: str, folder: Path) -> subprocess.CompletedProcess:
    """One shell line, `vitcli` and `python` being this interpreter."""
    python = shlex.quote(sys.executable)
    cmd = re.sub(r"(^|\| )vitcli ", lambda m: f"{m.group(1)}{python} -m vitcli ", command(line))
    cmd = re.sub(r"(^|\| )python ", lambda m: f"{m.group(1)}{python} ", cmd)
    env = {**os.environ, "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(["bash", "-c", cmd], cwd=folder, capture_output=True, timeout=900, env=env, check=False)


def check_line(line: str, folder: Path) -> str | None:
    """Run one line; the problem, or None when it ran and made what it promised."""
    r = run_line(line, folder)
    if r.returncode != 0:
        return f"exit {r.returncode}: {r.stderr.decode()[-800:]}"
    for name in outputs(line):
        if not (folder / name).exists():
            return f"{name} was not written"
    shape = promised_shape(line)
    npys = [o for o in outputs(line) if o.endswith(".npy")]
    if shape is not None and line.startswith("vitcli ") and npys:
        got = np.load(folder / npys[0], mmap_mode="r").shape
        if got != shape:
            return f"{npys[0]}: shape {got}, promised {shape}"
    if shape is not None and "| python" in line and str(shape) not in r.stdout.decode():
        return f"printed {r.stdout.decode()!r}, promised {shape}"
    return None


def python_script(text: str) -> str:
    """A Python block with each `EXPR.shape  # (a, b)` line turned into an assertion."""
    def check(m: re.Match) -> str:
        return f"assert tuple({m.group(1)}) == {m.group(2)}, ({m.group(1)!r}, {m.group(1)})"
    return re.sub(r"^(\S.*?\.shape)\s+#\s*(\([\d, ]+\)).*$", check, text, flags=re.MULTILINE)


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted({p for p, _, _ in page_examples()}))
def test_page_examples_run(page, tmp_path):
    pytest.importorskip("timm")
    folder = fresh_folder(tmp_path)
    failed = []
    for p, lang, text in page_examples():
        if p != page:
            continue
        if lang == "python":
            script = python_script(text)
            assert "assert tuple(" in script, "a Python example promises no shape"
            r = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, timeout=900, check=False,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
            if r.returncode != 0:
                failed.append(("python block", r.stderr.decode()[-800:]))
            continue
        for line in shell_lines(text):
            problem = check_line(line, folder)
            if problem:
                failed.append((line, problem))
    assert not failed, failed


@pytest.mark.slow
@pytest.mark.parametrize("name", list(help_examples()))
def test_help_examples_run(name, tmp_path):
    pytest.importorskip("timm")
    folder = fresh_folder(tmp_path)
    for line in help_examples()[name]:
        problem = check_line(line, folder)
        assert problem is None, (line, problem)


def test_readme_is_a_front_door_linking_into_the_docs():
    """The README stays short (≤ 200 lines) and every page it links exists and is in the site's nav."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    linked = set(re.findall(r"\]\((docs/[\w./-]+\.md)(?:#[\w-]+)?\)", readme))
    nav = (ROOT / "mkdocs.yml").read_text()
    assert len(linked) >= 8
    for page in linked:
        assert (ROOT / page).exists(), page
        assert page.removeprefix("docs/") in nav, page
