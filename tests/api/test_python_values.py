"""Python values in Python: every public keyword takes its Python types, and a wrong type is one
VitcliError naming the keyword (never a raw TypeError). The cases for wrong types come from the
public signatures, so a keyword added without a parser fails here (and at import)."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vitcli
from tests.conftest import SAMPLES, run_cli
from vitcli.api.values import keywords
from vitcli.errors import CHOICES, UsageError, VitcliError

CAT = SAMPLES / "chelsea.jpg"  # 451×300
SMALL = dict(dim=64, depth=2, heads=2)
CLI_SMALL = ("--model", "vit-ti16", "--dim", "64", "--depth", "2", "--heads", "2", "--seed", "3")
COMMANDS = ("embed", "attend", "explain", "similar", "filters", "pca", "norms", "view", "info", "embed_text",
            "classify", "compare", "probe")
FUNCTIONS = ("load_model", "load_images", "patchify", "unpatchify", "posenc")
WRONG = (object(), b"bytes", 1j)  # no keyword takes any of these


@pytest.fixture(scope="module")
def model():
    return vitcli.load_model("vit-ti16", seed=3, **SMALL)


def public(model) -> list[tuple[str, object, tuple, dict]]:
    """(name, function, arguments that pass, keywords that pass) for every public function."""
    first = {"load_model": ("vit-ti16",), "load_images": (str(CAT),), "patchify": (str(CAT),),
             "unpatchify": (np.zeros((4, 768), np.float32),), "posenc": ("vit-ti16",), "filters": (), "info": ()}
    calls = [(n, getattr(vitcli, n), first[n], {}) for n in FUNCTIONS]
    calls += [(n, getattr(model, n), first.get(n, (str(CAT),)), {"output": "page.html"} if n == "view" else {})
              for n in COMMANDS]
    return calls


def keyword_cases(model) -> list[tuple[str, str, object, tuple, dict]]:
    """(function, keyword, function, args, kwargs) for every keyword of every public function."""
    cases = []
    for name, fn, args, kwargs in public(model):
        for p in inspect.signature(fn).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                cases.append((name, p.name, fn, args, kwargs))
    return cases


def test_every_public_keyword_has_a_parser(model):
    for name, fn, _, _ in public(model):
        params = {p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        parsers = getattr(fn, "__vitcli_parsers__", None)
        assert parsers is not None, f"{name} is not wrapped by vitcli.api.values.keywords"
        assert params <= set(parsers), (name, params - set(parsers))


def test_a_keyword_without_a_parser_is_refused_when_declared():
    with pytest.raises(TypeError, match="no parser for colour"):
        @keywords()
        def draw(*, colour: str = "red") -> None:
            """A function with a keyword no parser knows."""


def test_wrong_types_name_the_keyword(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = keyword_cases(model)
    assert len(cases) > 100
    for name, keyword, fn, args, kwargs in cases:
        positional = [p.name for p in inspect.signature(fn).parameters.values()][:len(args)]
        for wrong in WRONG:
            call_args = () if keyword in positional else args
            with pytest.raises(VitcliError) as e:
                fn(*call_args, **{**kwargs, keyword: wrong})
            assert str(e.value).startswith(f"{keyword}: "), (name, keyword, str(e.value))
            assert "--" not in str(e.value), (name, keyword, str(e.value))
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize("call, message", [
    (lambda m: m.attend(str(CAT), start_layer=1.5, rollout=True),
     "^start_layer: must be a whole number at least 0, got 1.5"),
    (lambda m: m.attend(str(CAT), discard_ratio="0.5", rollout=True), "^discard_ratio: '0.5' is not a number"),
    (lambda m: m.attend(str(CAT), discard_ratio=1.0, rollout=True), "^discard_ratio: 1.0 is outside \\[0, 1\\)"),
    (lambda m: m.attend(str(CAT), layer=1.5), "^layer: 1.5 is not a layer index"),
    (lambda m: m.attend(str(CAT), layer=[0, "1"]), "^layer: "),
    (lambda m: m.attend(str(CAT), layer="[0"), "^layer: '\\[0' is not a layer"),
    (lambda m: m.attend(str(CAT), query=(1, 2, 3)), "^query: \\(1, 2, 3\\) is not a query"),
    (lambda m: m.attend(str(CAT), output=123), "^output: 123 is not a file name"),
    (lambda m: m.attend(str(CAT), batch=5), "^batch: 5 is not a BatchSpec"),
    (lambda m: m.attend(str(CAT), per_head="yes"), "^per_head: 'yes' is not True or False"),
    (lambda m: m.embed(str(CAT), size=1.5), "^size: 1.5 is not a size"),
    (lambda m: m.embed(str(CAT), size=(0, 32)), "^size: \\(0, 32\\) is not a size"),
    (lambda m: m.embed(str(CAT), fit="squash"), "^fit: 'squash' is not one of crop, resize, pad, strict"),
    (lambda m: m.embed(str(CAT), stage="logits"), "^stage: 'logits' is not one of patches"),
    (lambda m: m.embed(str(CAT), posenc="not-a-kind"), "^posenc: 'not-a-kind' is not one of learned"),
    (lambda m: m.embed(str(CAT), posenc="sincos2d"), "^posenc: 'sincos2d' is not this model's position encoding"),
    (lambda m: m.explain(str(CAT), layer=[0, 1]), "^layer: \\[0, 1\\] is not a layer index"),
    (lambda m: m.norms(str(CAT), top=0), "^top: must be a whole number at least 1, got 0"),
    (lambda m: vitcli.load_model("vit-ti16", depth="2"), "^depth: must be a whole number at least 1, got '2'"),
    (lambda m: vitcli.posenc("vit-ti16", kind="learned", colour=1), "^colour: is not a keyword of posenc"),
    (lambda m: m.embed(str(CAT), sise=448), "^sise: is not a keyword of embed"),
    (lambda m: m.embed(str(CAT), "input"), "^embed: too many positional arguments"),
])
def test_wrong_values_say_what_the_keyword_takes(model, call, message):
    with pytest.raises(VitcliError, match=message):
        call(model)


def test_rope_variant_without_rope_is_refused_by_name():
    with pytest.raises(UsageError, match="^rope_variant: works with kind='rope'") as e:
        vitcli.posenc("vit-ti16", kind="learned", rope_variant="eva")
    assert e.value.render(cli=True).startswith("--rope-variant: works with --kind=rope")


def test_rope_variant_with_rope_works():
    result = vitcli.posenc("vit-ti16", kind="rope", dim=64, rope_variant="eva")
    assert result.array.ndim == 2


def test_messages_are_spelled_per_front_end(model):
    with pytest.raises(VitcliError) as e:
        model.attend(str(CAT), query="all", rollout=True)
    assert str(e.value).startswith("query: overlay= and rollout= draw one query's map")
    assert e.value.render(cli=True).startswith("--query: --overlay and --rollout draw one query's map")
    shell = VitcliError("-o", "give --output-dir DIR instead of -o, or use --no-strict")
    assert str(shell) == "output: give output_dir=DIR instead of output=, or use strict=False"
    assert shell.render(cli=True) == "-o: give --output-dir DIR instead of -o, or use --no-strict"


@pytest.mark.parametrize("source, problem, python", [
    ("--layers", "works with --stage layers", "layers: works with stage='layers'"),  # a word --stage chooses
    ("--backend", "needs --format parquet or npy-shards with --output-dir DIR",
     "backend: needs format='parquet' or npy-shards with output_dir=DIR"),
    ("--labels", "give --labels 'a cat,a dog' or --labels-file FILE",
     "labels: give labels='a cat,a dog' or labels_file=FILE"),
    ("--top", "give --top 5, or --max-memory -1", "top: give top=5, or max_memory=-1"),
    ("--overlay", "--overlay and --rollout draw one map", "overlay: overlay= and rollout= draw one map"),
    ("--target image:cat.jpg", "needs 3 GiB", "target='image:cat.jpg': needs 3 GiB"),  # an option with its value
    ("-o -", "--json puts only JSON there", "output='-': json= puts only JSON there"),
    ("", "is a directory", "'': is a directory"),
    ("hub", "pass --online to download it", "hub: pass online=True to download it"),  # a True-or-False keyword
    ("photos", "add -r to include them", "photos: add recursive=True to include them"),
    ("--no-cls", "drop it", "class_token: drop it"),
    ("x.pth", "use --no-strict to load it anyway", "x.pth: use strict=False to load it anyway"),
])
def test_options_with_values_are_python_keywords(source, problem, python):
    """A problem is written once in the shell's words; Python callers read keywords with Python values."""
    error = VitcliError(source, problem)
    assert str(error) == python
    assert error.render(cli=True) == f"{source or repr(source)}: {problem}"


MISUSED = ("load_model", "embed", "attend", "explain", "posenc", "compare", "probe", "classify")
BAD = ("nope", "", -7, 10**9, float("nan"), (1, 2, 3))  # of a type some keyword takes, rarely a value it takes


def assert_python_words(error: VitcliError, case: object) -> None:
    """A message as a Python caller reads it: no shell option in it ('--x', a leading '-'), an option source named by
    its keyword, and no value of a choice left in the shell's words ('stage= layers' for stage='layers')."""
    text, shell = str(error), error.render(cli=True)
    assert "--" not in text and not text.startswith("-"), (case, text)
    if shell.startswith("-"):
        assert re.match(r"'?[a-z_][a-z0-9_]*(=|: )", text), (case, text)
    for given in re.finditer(r"\b([a-z_][a-z0-9_]*)= ('|-?\d|([a-z-]+))", text):
        assert given[3] is not None and given[3] not in CHOICES.get(given[1], ()), (case, text)


def test_misuse_is_one_python_line(model, tmp_path, monkeypatch):
    """Plausible wrong values (right kinds, wrong values) for every keyword of the commands: each call works or
    raises one VitcliError in Python's words, never another exception (tests/reliability/test_hostile_values.py
    sweeps every public function with odder values, slowly)."""
    monkeypatch.chdir(tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)  # in memory, fitted to 32×32
    cases = [c for c in keyword_cases(model) if c[0] in MISUSED]
    tried = refused = 0
    for name, keyword, fn, args, _ in cases:
        positional = [p.name for p in inspect.signature(fn).parameters.values()][:len(args)]
        on_image = args == (str(CAT),)
        base = {"size": 32} if on_image else SMALL if name == "load_model" else {}
        for bad in BAD:
            tried += 1
            try:
                fn(*(() if keyword in positional else (image,) if on_image else args), **{**base, keyword: bad})
            except VitcliError as e:
                refused += 1
                assert_python_words(e, (name, keyword, bad))
    assert tried > 500 and refused > tried // 2


@pytest.mark.parametrize("python, shell", [
    (1, "1"), (-1, "-1"), (np.int64(1), "1"), ([0, 1], "0,1"), ((1, 0), "0,1"), (range(0, 2), "0:2"), ("all", "all"),
])
def test_layer_takes_python_values(model, python, shell):
    images = vitcli.load_images(str(CAT), size=32)
    got = model.attend(images, layer=python).weights  # (L, H, Q, T)
    assert np.array_equal(got, model.attend(images, layer=shell).weights)


@pytest.mark.parametrize("python, shell", [((1, 2), "1,2"), ([1, 2], "1,2"), (6, "6"), (np.int32(0), "cls"),
                                           ("cls", "0")])
def test_query_takes_python_values(model, python, shell):
    images = vitcli.load_images(str(CAT), size=(32, 48))
    got = model.attend(images, layer="all", query=python).weights
    assert np.array_equal(got, model.attend(images, layer="all", query=shell).weights)


def test_attend_with_python_values_equals_the_cli(model, tmp_path):
    got = model.attend(str(CAT), layer=[0, 1], head=[1], query=(1, 2), size=(32, 48)).weights
    out = tmp_path / "w.npy"
    r = run_cli("attend", CAT, *CLI_SMALL, "--layer", "0,1", "--head", "1", "--query", "1,2", "--size", "32x48",
                "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    assert got.shape == (2, 1, 1, 7) and np.array_equal(got, np.load(out))


@pytest.mark.parametrize("size, text", [(48, "48"), ((32, 48), "32x48"), ([32, 48], "32x48"), ("native", "native")])
def test_size_on_a_command_is_image_loading(model, size, text):
    got = model.embed(str(CAT), size=size).array
    assert np.array_equal(got, model.embed(vitcli.load_images(str(CAT), size=text)).array)


def test_embed_size_equals_the_cli(model, tmp_path):
    out = tmp_path / "e.npy"
    r = run_cli("embed", CAT, *CLI_SMALL, "--size", "32x48", "--fit", "pad", "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    got = model.embed(str(CAT), size=(32, 48), fit="pad").array
    assert got.shape == (7, 64) and np.array_equal(got, np.load(out))


def test_image_options_keep_the_other_options_of_images(model):
    padded = vitcli.load_images(str(CAT), fit="pad", resample="nearest")
    got = model.embed(padded, size=32).array
    want = model.embed(vitcli.load_images(str(CAT), fit="pad", resample="nearest", size=32)).array
    assert np.array_equal(got, want)
    assert not np.array_equal(got, model.embed(str(CAT), size=32).array)  # crop, bicubic


@pytest.mark.parametrize("fit", ["crop", "resize", "pad"])
@pytest.mark.parametrize("resample", ["bicubic", "bilinear", "nearest", "lanczos"])
def test_image_choices_are_literals(model, fit, resample):
    got = model.explain(str(CAT), method="rollout", size=32, fit=fit, resample=resample).maps
    want = model.explain(vitcli.load_images(str(CAT), size=32, fit=fit, resample=resample), method="rollout").maps
    assert got.shape == (2, 2) and np.array_equal(got, want)


def test_stage_order_and_normalize_literals(model):
    for stage in ("patches", "tokens", "input", "output", "pooled"):
        assert model.embed(str(CAT), size=32, stage=stage).array is not None
    chw = vitcli.patchify(str(CAT), size=32, order="chw", normalize="imagenet").array  # (4, 3·16·16)
    hwc = vitcli.patchify(str(CAT), size=32, order="hwc", normalize="imagenet").array
    assert np.allclose(chw.reshape(4, 3, 16, 16).transpose(0, 2, 3, 1).reshape(4, -1), hwc)


def test_explain_layer_takes_an_int_or_its_text(model):
    one = model.explain(str(CAT), method="gradcam", layer=1, size=32).maps
    assert np.array_equal(one, model.explain(str(CAT), method="gradcam", layer="1", size=32).maps)
    assert np.array_equal(one, model.explain(str(CAT), method="gradcam", layer=np.int64(-1), size=32).maps)


def test_similar_patch_and_posenc_grid_take_pairs(model):
    assert np.array_equal(model.similar(str(CAT), patch=(1, 0), size=32).array,
                          model.similar(str(CAT), patch="1,0", size=32).array)
    table = vitcli.posenc("vit-ti16", kind="sincos2d", dim=64, grid=(2, 3)).array
    assert np.array_equal(table, vitcli.posenc("vit-ti16", kind="sincos2d", dim=64, grid="2x3").array)


def test_paths_are_path_like(model, tmp_path):
    out = tmp_path / "e.npy"
    result = model.embed(CAT, size=32, output=out)  # pathlib.Path for the image and the output
    assert np.array_equal(np.load(out), result.array)


def test_repr_of_a_model_says_what_it_is(model):
    text = repr(model)
    for part in ("vit-ti16", "64-d", "2 blocks", "2 heads", "patch 16", "224x224", "learned table", "LayerNorm",
                 "class token", "random weights (seed 3)", "float32"):
        assert part in text, (part, text)
    assert "object at 0x" not in text and "\n" not in text


def test_the_package_completes_its_public_names():
    names = dir(vitcli)
    for name in ("load_model", "load_images", "patchify", "unpatchify", "posenc", "Model", "VitcliError"):
        assert name in names and name in vitcli.__all__
    assert all(getattr(vitcli, n) is not None for n in vitcli.__all__)


def test_import_and_dir_stay_free_of_torch():
    code = "import sys, vitcli; dir(vitcli); print('torch' in sys.modules, 'numpy' in sys.modules)"
    root = Path(vitcli.__file__).parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.stdout.strip() == "False False", out.stderr


def test_results_show_themselves_in_jupyter(model):
    attended = model.attend(str(CAT), layer="all", size=(32, 48))
    page = attended._repr_html_()
    assert "<table>" in page and ">attend<" in page and "data:image/png;base64," in page
    assert attended._repr_png_().startswith(b"\x89PNG")
    embedded = model.embed(str(CAT), size=32)
    assert "<table>" in embedded._repr_html_() and embedded._repr_png_() is None
    norms = model.norms(str(CAT), size=32)
    assert norms.tables and norms.tables[0]["title"] in norms._repr_html_()


def test_numpy_scalars_are_numbers(model):
    small = vitcli.load_model("vit-ti16", seed=np.int64(3), dim=np.int64(64), depth=np.int32(2), heads=2,
                              mlp_ratio=np.float32(4.0))
    assert repr(small) == repr(model)
    assert np.array_equal(small.norms(str(CAT), size=32, top=np.int64(3), k=np.float64(2.0)).array,
                          model.norms(str(CAT), size=32, top=3, k=2.0).array)


def test_keywords_is_loud_about_parsers_it_cannot_use() -> None:
    """The old `with_images=` spelling and a parser for a keyword the function lacks fail at decoration."""
    from vitcli.api.images import image_keywords
    from vitcli.api.values import keywords, one_layer

    with pytest.raises(TypeError, match="image_keywords"):
        keywords(with_images=("images",))
    with pytest.raises(TypeError, match="layer"):
        keywords(layer=one_layer)(lambda images: images)
    embed_like = image_keywords("images")(lambda images, *, normalize=None: images)
    assert "size" in inspect.signature(embed_like).parameters  # the image options are added
