"""Python values: an array's scale is decided by its dtype (vitcli.io.images.array_pixels), ambiguous or
impossible ranges are one VitcliError, and every public keyword given a value of a wrong type or range
either works or raises one VitcliError naming that keyword (never TypeError, ValueError, …), within a
time cap per call.
"""

import inspect
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

import vitcli
from tests.api.test_python_values import CAT, assert_python_words, keyword_cases
from vitcli.errors import VitcliError

SIDE = 32
INTEGERS = [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64]


def pixels_of(array: np.ndarray) -> np.ndarray:
    """The upright RGB pixels vitcli reads from an in-memory (H, W, 3) array, at its own size."""
    [fitted] = list(vitcli.load_images(array, size="native"))
    return fitted.pixels


@pytest.mark.parametrize("dtype", INTEGERS)
def test_integer_arrays_of_0_to_255_are_8_bit_whatever_their_width(dtype) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 256, (SIDE, SIDE, 3))
    if np.iinfo(dtype).max < 255:
        values = values // 2  # int8 holds 0..127
    assert np.array_equal(pixels_of(values.astype(dtype)), values.astype(np.uint8))  # never scaled as 16-bit


@pytest.mark.parametrize("dtype", INTEGERS)
def test_integer_arrays_outside_0_to_255_are_one_line(dtype) -> None:
    info = np.iinfo(dtype)
    for bad in [v for v in (-1, 256, 65535, int(info.max)) if info.min <= v <= info.max and not 0 <= v <= 255]:
        values = np.zeros((SIDE, SIDE, 3), dtype)
        values[3, 4, 1] = bad
        with pytest.raises(VitcliError, match=f"image array \\({np.dtype(dtype).name}\\) holds .*uint16"):
            pixels_of(values)


def test_uint16_is_16_bit_and_floats_are_0_1_or_0_255() -> None:
    rng = np.random.default_rng(1)
    wide = rng.integers(0, 65536, (SIDE, SIDE, 3)).astype(np.uint16)
    assert np.array_equal(pixels_of(wide), np.rint(wide / 65535 * 255).astype(np.uint8))
    for dtype in (np.float16, np.float32, np.float64):
        unit = rng.random((SIDE, SIDE, 3)).astype(dtype)
        unit[0, 0, 0] = 1.0
        assert np.array_equal(pixels_of(unit), np.rint(unit.astype(np.float64) * 255).astype(np.uint8))
        byte = (unit.astype(np.float64) * 255).astype(dtype)
        assert np.array_equal(pixels_of(byte), np.rint(byte.astype(np.float64)).astype(np.uint8))


@pytest.mark.parametrize("top", [1.0001, 1.01, 1.5, 1.999])
def test_a_float_image_just_above_1_is_ambiguous(top: float) -> None:
    for dtype in (np.float32, np.float64):
        values = np.random.default_rng(2).random((SIDE, SIDE, 3)).astype(dtype)
        values[5, 5, 2] = top
        with pytest.raises(VitcliError, match="neither 0..1 .* nor clearly 0..255"):
            pixels_of(values)


@pytest.mark.parametrize("special", [-0.5, 255.5, np.nan, np.inf, -np.inf])
def test_float_images_that_are_not_pixels_are_one_line(special: float) -> None:
    values = np.random.default_rng(3).random((SIDE, SIDE, 3))
    values[0, 1, 0] = special
    with pytest.raises(VitcliError, match="image array \\(float64\\) holds"):
        pixels_of(values)


# ---- every keyword, values of the wrong type or range -----------------------------------------------

ODD = [1.5, -1, 0, 10 ** 12, "1.5", "\u00b2", "", [], {}, True, float("nan"), float("inf"), np.int64(2), (1, 2, 3)]
CALL_SECONDS = 20


class CallTimeout(BaseException):
    """A call that ran past its cap."""


@contextmanager
def capped(seconds: float) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise CallTimeout()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def model():
    return vitcli.load_model("vit-ti16", seed=3, dim=64, depth=2, heads=2)


@pytest.mark.slow
def test_every_keyword_with_odd_values_works_or_names_itself(model, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    small = {"size": 32}
    failures = []
    for name, keyword, fn, args, kwargs in keyword_cases(model):
        positional = [p.name for p in inspect.signature(fn).parameters.values()][:len(args)]
        takes_size = "size" in inspect.signature(fn).parameters or name in ("embed", "attend", "explain", "view",
                                                                             "similar", "pca", "norms")
        for odd in ODD:
            call_args = () if keyword in positional else args
            extra = {**small} if takes_size and keyword != "size" else {}
            try:
                with capped(CALL_SECONDS):
                    fn(*call_args, **{**kwargs, **extra, keyword: odd})
            except VitcliError as e:  # one line (which keyword it names is checked for wrong types in tests/api)
                assert_python_words(e, (name, keyword, odd))
            except CallTimeout:
                failures.append((name, keyword, repr(odd), "over the time cap"))
            except Exception as e:  # noqa: BLE001 - what this test exists to catch
                failures.append((name, keyword, repr(odd), f"{type(e).__name__}: {str(e)[:120]}"))
    assert not failures, "\n".join(map(str, failures[:40]))


def test_the_images_argument_takes_a_path_or_arrays() -> None:
    with pytest.raises(VitcliError, match="must hold numbers, got complex64"):
        pixels_of(np.zeros((SIDE, SIDE, 3), np.complex64))
    assert pixels_of(np.zeros((SIDE, SIDE, 3), np.uint8)).shape == (SIDE, SIDE, 3)
    assert len(list(vitcli.load_images(str(CAT)))) == 1
