"""A model first used inside the caller's `torch.inference_mode()` still explains (a backward pass)."""

import numpy as np
import torch

import vitcli
from tests.conftest import SAMPLES


def test_a_model_built_under_inference_mode_still_explains() -> None:
    image = SAMPLES / "chelsea.jpg"
    built_inside = vitcli.load_model("vit-ti16", depth=2)
    with torch.inference_mode():  # as a notebook wraps its calls; the module is built here, on first use
        built_inside.embed(image)
    inside = built_inside.explain(image, method="all", target="patch:3,5").maps  # (4, rows, cols)
    outside = vitcli.load_model("vit-ti16", depth=2).explain(image, method="all", target="patch:3,5").maps
    assert inside.shape == (4, 14, 14) and np.array_equal(inside, outside)
