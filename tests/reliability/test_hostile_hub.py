"""Hub cache paths: a spec's repository and revision never leave the cache's refs/ and snapshots/, and
refs/<branch> is read under a small cap (refused unread when it is a FIFO, a device or huge).

A local cache laid out as huggingface_hub lays it out (models--ORG--NAME/refs, snapshots/<commit>),
with a readable weights file planted outside it where each traversal would land. HF_HUB_OFFLINE=1:
nothing is downloaded.
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import sampled
from tests.reliability.helpers import assert_one_line, run_capped

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TRAVERSALS = ["../../../FILE", "..", "../refs/main", "a/../../FILE", "/FILE", "main/../../../FILE", "./main",
              "main/..", "..\\..\\FILE", "ma in", "main\n", "main\t", "~", "$HOME", "main;ls"]
BAD_REPOS = ["acme/..", "../acme", "acme/.", "a b/c", "acme/tiny/..", "./tiny", "acme/-x", "acme/\u00b2"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> tuple[Path, bytes]:
    """(cache folder, weights bytes): models--acme--tiny with refs/main and one snapshot, and FILE outside."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save

    model = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=16, embed_dim=64, depth=2,
                                                             num_heads=2, num_classes=0)
    weights = save(model.state_dict())
    root = tmp_path_factory.mktemp("hub")
    repo = root / "hub" / "models--acme--tiny"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT / "model.safetensors").write_bytes(weights)
    for where in (root / "FILE", root / "hub" / "FILE", repo / "FILE"):
        where.write_bytes(weights)  # what a traversal would read as weights
    return root / "hub", weights


def _env(cache: Path) -> dict[str, str]:
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def test_revisions_and_repository_names_that_leave_the_cache_are_one_line(cache, tmp_path: Path) -> None:
    hub, _ = cache
    specs = [f"hf-hub:acme/tiny@{r}" for r in TRAVERSALS] + [f"hf-hub:{r}" for r in BAD_REPOS]
    specs += [f"timm:{r}" for r in ("..", "../acme", "a/../b")]
    results = run_capped([["info", "--weights", s, "--json"] for s in specs], tmp_path, env=_env(hub))
    for result, spec in zip(results, specs):
        assert_one_line(result, spec.split("@")[0].split("/")[0])
    good = run_capped([["info", "--weights", f"hf-hub:acme/tiny@{r}", "--json"] for r in ("main", COMMIT[:7])],
                      tmp_path, env=_env(hub))
    assert [g["code"] for g in good] == [0, 0], [g["stderr"] for g in good]


@sampled("kind", ["huge", "fifo", "device"])
def test_a_ref_that_is_huge_a_fifo_or_a_device_is_not_read(cache, tmp_path: Path, kind: str) -> None:
    hub, _ = cache
    copy = tmp_path / "hub"
    shutil.copytree(hub, copy, symlinks=True)
    ref = copy / "models--acme--tiny" / "refs" / "main"
    ref.unlink()
    if kind == "huge":
        with open(ref, "wb") as f:
            f.write(COMMIT.encode())
            f.truncate(6 << 30)  # sparse: 6 GiB that take no disk
    elif kind == "fifo":
        os.mkfifo(ref)
    else:
        ref.symlink_to("/dev/zero")
    [result] = run_capped([["info", "--weights", "hf-hub:acme/tiny", "--json"]], tmp_path, seconds=10, env=_env(copy))
    assert_one_line(result, "refs/main")
