"""Every command's tables at 80 columns: no number or shape is cut (rich marks a cut with …)."""

import re

import pytest
from rich.console import Console

import vitcli
from tests.conftest import SAMPLES

CAT, COFFEE = str(SAMPLES / "chelsea.jpg"), str(SAMPLES / "coffee.jpg")


@pytest.fixture(scope="module")
def model():
    return vitcli.load_model("vit-ti16", depth=2)


def render(*renderables) -> str:
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    for r in renderables:
        console.print(r)
    return console.export_text()


class _Out:
    colour = False


def test_model_commands_fit(model):
    from vitcli.cli import attend, embed, info

    text = render(*embed._tables(model.embed(CAT).document))
    text += render(*embed._tables(model.embed([CAT, COFFEE], stage="pooled").document))
    text += render(*attend._tables(model.attend(CAT, layer="all", distance=True, rollout=True, masks=True), _Out()))
    text += render(*attend._tables(model.attend([CAT, COFFEE], distance=True), _Out()))
    text += render(info._table(model.info()))
    assert "…" not in text, text
    assert "(197, 192)" in text and "(2, 192)" in text  # shapes shown whole


def test_pixel_and_table_commands_fit(model):
    from vitcli.cli import patchify, posenc

    text = render(*patchify._tables(vitcli.patchify(CAT).document))
    text += render(*posenc._tables(vitcli.posenc(model, positions="0:3").document))
    assert "…" not in text.replace("… (192 values)", ""), text  # the row listing says how many it leaves out
    assert "(196, 768)" in text


def test_figures_fit(model):
    from vitcli.cli.figures import _show  # noqa: F401  (the command's own renderer)
    from vitcli.cli.report import info_table
    from vitcli.cli.tables import figure_rows, rows_table

    for result in (model.filters(count=4), model.similar(CAT), model.norms(CAT), model.pca([CAT, COFFEE])):
        doc = result.document
        rows = figure_rows(doc) if "inputs" in doc else []
        text = render(info_table("x", rows), *[rows_table(t["title"], t["columns"], t["rows"]) for t in result.tables])
        assert "…" not in text, text


def run_on_terminal(*args: str, env: dict | None = None) -> str:
    """The CLI with standard output on a pseudo-terminal of 80 columns, as a person sees it."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 80, 0, 0))
    full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
    proc = subprocess.Popen([sys.executable, "-m", "vitcli", *args], stdout=follower, stderr=subprocess.PIPE,
                            env={**full_env, "TERM": "xterm-256color", **(env or {})})
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr.read()
    return b"".join(chunks).decode()


def test_no_color_on_a_terminal_draws_the_ramp_and_a_patch_query_draws_its_own_map():
    small = ("--model", "vit-ti16", "--depth", "1")
    plain = run_on_terminal("attend", CAT, *small, "--query", "3,4", env={"NO_COLOR": "1"})
    assert "patch (3, 4) attention, layer 0" in plain and "class-token attention" not in plain
    assert "@" in plain and "▀" not in plain and "\x1b[38;" not in plain  # the ramp, no colour codes
    raw = run_on_terminal("attend", CAT, *small)
    coloured = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    assert "\x1b[38;" in raw and "cls attention, layer 0" in coloured and "▀" in coloured and "low " in coloured and " high" in coloured


@pytest.mark.parametrize("method", ["all", "grad-rollout"])
def test_explain_all_methods_fit(model, method):
    """`explain`: the method names (grad-rollout the longest) are never cut, and neither is a table's right
    border (one method's five strongest patches once came out a column too wide, its border cropped)."""
    from vitcli.cli import explain

    text = render(*explain._tables(model.explain(CAT, method=method, target="patch:3,5"), _Out()))
    assert "…" not in text, text
    names = ("grad-rollout", "attn-grad", "gradcam", "rollout") if method == "all" else (method,)
    for name in names:
        assert f"│ {name} " in text, (name, text)
    rows = [line.rstrip() for line in text.splitlines() if line.startswith(("│", "┃", "┏", "└"))]
    assert all(line[-1] in "│┃┓┘┐┤┨┩" for line in rows), text
