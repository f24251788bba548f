"""A type checker sees the public API's results and parameters (no `Any` behind the keyword decorators).

mypy reads a user's script that calls the fluent API; what it reveals must be vitcli's result classes,
and a wrong keyword type on a plain (non-image) command must be a type error."""

import textwrap
from pathlib import Path

import pytest

SCRIPT = """
import vitcli

model = vitcli.load_model("vit-ti16")
reveal_type(vitcli.load_model)
reveal_type(model.embed("cat.jpg"))
reveal_type(model.attend("cat.jpg", layer=3))
reveal_type(model.explain("cat.jpg"))
reveal_type(vitcli.posenc(model))
reveal_type(model.probe("root"))
reveal_type(model.view("cat.jpg"))
model.probe("root", k=[1])
"""


@pytest.mark.slow
def test_mypy_sees_the_result_classes(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out, _, _ = api.run([str(script), "--cache-dir", str(tmp_path / "cache"), "--ignore-missing-imports",
                         "--follow-imports", "silent", "--no-error-summary"])
    revealed = [line.split("Revealed type is ", 1)[1] for line in out.splitlines() if "Revealed type is" in line]
    assert len(revealed) == 7, out
    assert "Any" not in revealed[0] and "vitcli.api.models.Model" in revealed[0], revealed[0]
    for name, shown in zip(["EmbedResult", "AttendResult", "ExplainResult", "PosencResult", "ProbeResult",
                            "ViewResult"], revealed[1:], strict=True):
        assert "vitcli.api" in shown and name in shown and shown.strip('"') != "Any", (name, shown)
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1 and ":12:" in errors[0] and '"k"' in errors[0], out
