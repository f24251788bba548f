"""Patch embedding: the linear form on patchify's output equals the conv, in both patch orders."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitcli.core.embedding import PatchEmbed, conv_weight_to_linear


def _images(b: int, c: int, h: int, w: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Normalised-looking pixels: (uniform[0, 1] - 0.45) / 0.225, as after ImageNet normalisation."""
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(b, c, h, w, generator=g, dtype=torch.float64) - 0.45) / 0.225).to(dtype)


def _embed(p: int, c: int, d: int, dtype: torch.dtype, bias: bool = True, seed: int = 1) -> PatchEmbed:
    """A PatchEmbed with weights of std 1/sqrt(fan_in) and small biases."""
    g = torch.Generator().manual_seed(seed)
    m = PatchEmbed(p, c, d, bias=bias).to(dtype)
    with torch.no_grad():
        m.proj.weight.copy_(torch.randn(d, c, p, p, generator=g, dtype=torch.float64) / np.sqrt(c * p * p))
        if bias:
            m.proj.bias.copy_(0.1 * torch.randn(d, generator=g, dtype=torch.float64))
    return m


@pytest.mark.parametrize("order", ["chw", "hwc"])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("p, d, rows, cols",
                         [(16, 64, 3, 5), (14, 48, 4, 2), (8, 96, 5, 3), (4, 7, 2, 6), (1, 5, 3, 4)])
def test_linear_equals_conv(order: str, dtype: torch.dtype, tol: float, p: int, d: int, rows: int, cols: int) -> None:
    m = _embed(p, 3, d, dtype, bias=(d % 2 == 0))
    x = _images(2, 3, rows * p, cols * p, dtype)
    reference = F.conv2d(x, m.proj.weight, m.proj.bias, stride=p)  # torch's own conv: (B, D, R, Cl)
    reference = reference.permute(0, 2, 3, 1).reshape(2, rows * cols, d)  # row-major patches
    linear = m(x, impl="linear", order=order)
    assert linear.shape == (2, rows * cols, d) and linear.dtype == dtype
    assert (linear - reference).abs().max().item() <= tol
    assert (m(x, impl="conv") - reference).abs().max().item() <= tol


def test_linear_weight_layout_by_hand() -> None:
    w = np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4)  # (D, C, P, P)
    chw = conv_weight_to_linear(torch.from_numpy(w), "chw").numpy()
    hwc = conv_weight_to_linear(torch.from_numpy(w), "hwc").numpy()
    for d in range(2):
        for c in range(3):
            for y in range(4):
                for x in range(4):
                    assert chw[d, c * 16 + y * 4 + x] == w[d, c, y, x]
                    assert hwc[d, (y * 4 + x) * 3 + c] == w[d, c, y, x]


def test_single_patch_by_hand() -> None:
    m = _embed(2, 1, 3, torch.float64, bias=True)
    x = _images(1, 1, 2, 2, torch.float64)
    expected = m.proj.weight.reshape(3, 4) @ x.reshape(4) + m.proj.bias  # one dot product per channel
    torch.testing.assert_close(m(x, impl="linear")[0, 0], expected, rtol=0, atol=1e-12)


def test_unknown_impl_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown patch embedding"):
        _embed(4, 3, 8, torch.float32)(torch.zeros(1, 3, 8, 8), impl="einsum")  # type: ignore[arg-type]
