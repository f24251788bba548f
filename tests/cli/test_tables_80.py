"""Every command's tables at 80 columns: no number or shape is cut (rich marks a cut with …)."""

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

    text = render(*embed._tables(model.embed(CAT).document, False))
    text += render(*embed._tables(model.embed([CAT, COFFEE], stage="pooled").document, True))
    text += render(*attend._tables(model.attend(CAT, layer="all", distance=True, rollout=True, masks=True), False, _Out()))
    text += render(*attend._tables(model.attend([CAT, COFFEE], distance=True), True, _Out()))
    text += render(info._table(model.info()))
    assert "…" not in text, text
    assert "(197, 192)" in text and "(2, 192)" in text  # shapes shown whole


def test_pixel_and_table_commands_fit(model):
    from vitcli.cli import patchify, posenc

    text = render(*patchify._tables(vitcli.patchify(CAT).document, False))
    text += render(*posenc._tables(vitcli.posenc(model, positions="0:3").document))
    assert "…" not in text.replace("… (192 values)", ""), text  # the row listing says how many it leaves out
    assert "(196, 768)" in text


def test_figures_fit(model):
    from vitcli.cli.figures import _show  # noqa: F401  (the command's own renderer)
    from vitcli.report import info_table
    from vitcli.tables import figure_rows, rows_table

    for result in (model.filters(count=4), model.similar(CAT), model.norms(CAT), model.pca([CAT, COFFEE])):
        doc = result.document
        rows = figure_rows(doc) if "inputs" in doc else []
        text = render(info_table("x", rows), *[rows_table(t["title"], t["columns"], t["rows"]) for t in result.tables])
        assert "…" not in text, text
