"""Every file a run will write is planned in one place (vitcli.api.outputs) and checked before anything
is computed: through the Python API as through the CLI, and for the files a run writes without
being named (-o's index for several images, --rollout's picture, the contents of --output-dir).

Cases are generated: each command and output keyword of the API against a missing folder, and each
implied output against each way an input can sit under its name (the same path, a symlink, a hard
link, inside or linked into the output folder). Per case: one error naming the output, before any
module of the model runs, every input and earlier output intact, nothing else written.
"""

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.reliability.corpus import SAMPLES
from tests.reliability.helpers import run_batch
from tests.reliability.test_all_or_nothing import TINY, one_error_line, snapshot
from vitcli.errors import VitcliError

CHELSEA = SAMPLES / "chelsea.jpg"


@pytest.fixture(scope="module")
def model():
    from vitcli.api import load_model

    return load_model("vit-ti16", dim=64, depth=2, heads=2, seed=0)


def _api_calls(model, image: str, out: str) -> list[tuple[str, object]]:
    """(output named, call) for every API command and every output keyword that names a file."""
    from vitcli.api import patchify, posenc, unpatchify

    two = [image, str(SAMPLES / "coffee.jpg")]
    return [
        (out, lambda: model.embed(image, output=out)),
        (out, lambda: model.embed(two, output=out)),
        (out, lambda: model.embed(two, output_dir=out)),
        (out, lambda: model.attend(image, output=out)),
        *[(out, lambda k=k: model.attend(image, **{k: out})) for k in
          ("rollout", "distance", "plot_distance", "masks", "cosine", "save_qkv", "overlay")],
        (out, lambda: model.explain(image, output=out)),
        (out, lambda: model.explain(image, overlay=out)),
        (out, lambda: model.explain(two, output=out)),
        (out, lambda: model.explain(image, target=f"image:{image}", method="gradcam", output=out)),
        (out, lambda: model.pca(image, output=out)),
        (out, lambda: model.similar(image, png=out)),
        (out, lambda: model.norms(image, output=out)),
        (out, lambda: model.filters(output=out)),
        (out, lambda: model.view(image, output=out)),
        (out, lambda: patchify(image, output=out)),
        (out, lambda: patchify(image, grid_png=out)),
        (out, lambda: patchify(two, output_dir=out)),
        (out, lambda: posenc(model, output=out)),
        (out, lambda: posenc(model, similarity=out)),
        (out, lambda: unpatchify(torch.zeros(4, 768).numpy(), output=out)),
    ]


def test_the_api_checks_every_output_before_any_forward_pass(model, tmp_path: Path, monkeypatch) -> None:
    """An output under a file (no folder can be made there) is one VitcliError naming it, raised
    before any module is called."""
    calls = []
    real_call = torch.nn.Module.__call__

    def counted(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return real_call(self, *args, **kwargs)

    model.module  # built before counting: building runs no module
    monkeypatch.setattr(torch.nn.Module, "__call__", counted)
    (tmp_path / "blocker").write_bytes(b"a file, not a folder")
    out = tmp_path / "blocker" / "x.npy"
    before = snapshot(tmp_path)
    for i, (named, call) in enumerate(_api_calls(model, str(CHELSEA), str(out))):
        with pytest.raises(VitcliError) as info:
            call()
        assert str(info.value).startswith(named), (i, str(info.value))
        assert calls == [], (i, str(info.value), calls)
    assert snapshot(tmp_path) == before
    model.embed(str(CHELSEA))  # the counter does count a forward pass
    assert calls


def _image_named(path: Path) -> None:
    """A real PNG at `path`, whatever its suffix."""
    Image.open(CHELSEA).convert("RGB").resize((64, 64)).save(path, format="PNG")


def _implied_cases(tmp_path: Path) -> list[tuple[list[str], str, list[Path]]]:
    """(command, words of the error, files that must stay as they are) for every implied output ×
    every way an input can sit under its name."""
    cases = []
    for k, way in enumerate(("same path", "symlink", "hard link")):
        root = tmp_path / f"c{k}"
        root.mkdir()
        a = root / "a.png"
        _image_named(a)

        def under(name: str) -> Path:
            """An input under `name`: the image itself, or a link there to a.png."""
            target = root / name
            if way == "same path":
                _image_named(target)
            elif way == "symlink":
                target.symlink_to(a)
            else:
                os.link(a, target)
            return target

        index = under("x.index.jsonl")  # -o x.npy of several images writes x.index.jsonl
        inputs = [a, index] if way == "same path" else [a, root / "b.png"]
        if way != "same path":
            _image_named(root / "b.png")
        for command in ("embed", "patchify", "explain", "attend"):
            cases.append(([command, *inputs, "-o", root / "x.npy", *([] if command == "patchify" else TINY),
                           "--size", "32"], ["-o's index", str(index)], [a, index]))
        picture = under("r.png")  # --rollout r.npy draws r.png
        one = picture if way == "same path" else a
        cases.append((["attend", one, *TINY, "--size", "32", "--rollout", root / "r.npy"],
                      ["--rollout's picture", str(picture)], [a, picture]))
        folder = root / "out"
        folder.mkdir()
        inside = folder / "p.png"
        _image_named(inside)
        if way == "symlink":  # an input elsewhere that leads into the folder the run replaces
            (root / "into.png").symlink_to(inside)
            inside = root / "into.png"
        for command in ("embed", "patchify", "explain"):
            cases.append(([command, a, inside, *([] if command == "patchify" else TINY), "--size", "32",
                           "--output-dir", folder], [str(inside), "inside --output-dir"], [a, folder / "p.png"]))
            cases.append(([command, root, "-r", *([] if command == "patchify" else TINY), "--size", "32",
                           "--output-dir", folder], ["inside --output-dir"], [a, folder / "p.png"]))
    return cases


def test_no_implied_output_may_be_an_input(tmp_path: Path) -> None:
    """An input under the name of an index, a rollout picture or inside --output-dir is refused."""
    cases = _implied_cases(tmp_path)
    kept = {p: p.read_bytes() for _, _, files in cases for p in files}
    before = snapshot(tmp_path)
    results = run_batch([c for c, _, _ in cases], tmp_path)
    for (_, words, _), result in zip(cases, results):
        one_error_line(result, *words)
    assert {p: p.read_bytes() for p in kept} == kept
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k not in ("cases.json", "results.json")} == before


def test_the_same_inputs_run_when_nothing_implied_collides(tmp_path: Path) -> None:
    """The check refuses only collisions: one image named x.index.jsonl writes no index, and runs."""
    _image_named(tmp_path / "x.index.jsonl")
    _image_named(tmp_path / "a.png")
    results = run_batch([["embed", tmp_path / "x.index.jsonl", *TINY, "--size", "32", "-o", tmp_path / "x.npy", "-q"],
                         ["attend", tmp_path / "a.png", *TINY, "--size", "32", "--rollout", tmp_path / "r.npy", "-q"]],
                        tmp_path)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert (tmp_path / "x.npy").exists() and (tmp_path / "r.png").exists()


def test_the_cli_and_the_api_share_one_plan() -> None:
    """The CLI's check is the API's: no second list of output options."""
    import vitcli.cli.common as common
    from vitcli.api.outputs import planned_files

    assert not hasattr(common, "OUTPUT_FILES")
    assert planned_files({"output": "x.npy", "rollout": "r.npy", "overlay": True}, many=True) == {
        "-o": "x.npy", "-o's index": "x.index.jsonl", "--rollout": "r.npy", "--rollout's picture": "r.png"}
    assert planned_files({"output": "x.npy"}, many=False) == {"-o": "x.npy"}
