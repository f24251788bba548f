"""All or nothing: failed writes, full disks, signals and kills leave the earlier output whole and
no temporary behind; every output is checked before the first byte is written; --json keeps
standard output for JSON; no file appears that the user did not name.

Each class is a list of generated cases run through the real CLI (one subprocess per batch, see
driver.py); each bug found is kept as a case. Writes fail for real: RLIMIT_FSIZE in the child
(`prlimit --fsize`: the kernel refuses the write with EFBIG) and a 64 kB tmpfs (ENOSPC, root only).
"""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reliability.corpus import ROOT, SAMPLES
from tests.reliability.helpers import PREVIOUS, in_private_mount, run_batch
from vitcli.io import atomic
from vitcli.io.batch import open_sink

TINY = ["--model", "vit-ti16", "--dim", "64", "--depth", "2", "--heads", "2"]
CHELSEA = SAMPLES / "chelsea.jpg"


def one_error_line(result: subprocess.CompletedProcess, *words: str, code: int = 1) -> str:
    """Exit `code`, exactly one stderr line naming `words`, no traceback, nothing on stdout."""
    err = result.stderr.decode()
    assert result.returncode == code, (result.args, result.returncode, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, (result.args, err)
    for w in words:
        assert str(w) in lines[0], (result.args, lines[0], w)
    assert result.stdout == b"", (result.args, result.stdout[:200])
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` (hidden ones too) → the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary names anywhere below `folder`."""
    return [str(p) for p in folder.rglob("*") if atomic.MARK in p.name or p.name.endswith(".part")
            or p.name.startswith(".vitcli-")]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Six small JPEGs (names sort a0 … a5)."""
    folder = tmp_path_factory.mktemp("photos")
    samples = sorted(SAMPLES.glob("*.jpg"))
    for i in range(6):
        Image.open(samples[i % len(samples)]).convert("RGB").resize((64 + 8 * i, 64)).save(folder / f"a{i}.jpg")
    return folder


# --- a write that fails: RLIMIT_FSIZE (EFBIG) ------------------------------------------------------


def failing_write_cases(photos: Path, d: Path) -> list[tuple[list[str], str]]:
    """(command, the file its error must name): each writes more than 20 kB to one file in `d`."""
    many = [str(photos)]
    return [
        (["patchify", CHELSEA, "-o", d / "out.npy"], d / "out.npy"),
        (["patchify", CHELSEA, "--size", "448", "--grid-png", d / "grid.png"], d / "grid.png"),
        (["patchify", *many, "--size", "224", "-o", d / "out.npy"], d / "out.npy"),
        (["patchify", *many, "--size", "224", "--output-dir", d / "run"], d / "run"),
        (["embed", *many, *TINY, "--size", "224", "-o", d / "out.npy"], d / "out.npy"),
        (["embed", *many, *TINY, "--size", "224", "--output-dir", d / "run"], d / "run"),
        (["embed", *many, *TINY, "--size", "224", "--stage", "output", "-o", d / "emb.parquet"], d / "emb.parquet"),
        (["attend", CHELSEA, *TINY, "--rollout", d / "roll.npy"], d / "roll.npy"),
        (["view", CHELSEA, *TINY, "--size", "64", "-o", d / "page.html"], d / "page.html"),
        (["figures", "similar", CHELSEA, *TINY, "--png", d / "sim.png"], d / "sim.png"),
    ]


def test_a_failed_write_names_the_file_and_leaves_the_earlier_output(photos: Path, tmp_path: Path) -> None:
    if not shutil.which("prlimit"):
        pytest.skip("needs prlimit (util-linux)")
    cases, folders = [], []
    for i, (args, named) in enumerate(failing_write_cases(photos, tmp_path / "slot")):
        d = tmp_path / f"slot{i}"
        args = [str(a).replace(str(tmp_path / "slot"), str(d)) for a in args]
        named = str(named).replace(str(tmp_path / "slot"), str(d))
        _earlier_outputs(d, photos)
        cases.append(args)
        folders.append((d, named, snapshot(d)))
    results = run_batch(cases, tmp_path, prefix=["prlimit", "--fsize=20000"])
    for result, (d, named, before) in zip(results, folders):
        line = one_error_line(result, named, "cannot write: File too large")
        assert snapshot(d) == before, (result.args, line)  # the earlier outputs are whole; no temporary


def _earlier_outputs(d: Path, photos: Path) -> None:
    """An earlier run's files in `d`: loose files and a --output-dir folder with its index."""
    d.mkdir()
    for name in ("out.npy", "grid.png", "roll.npy", "roll.png", "page.html", "sim.png", "emb.parquet"):
        (d / name).write_bytes(PREVIOUS)
    (d / "run").mkdir()
    (d / "run" / "old.npy").write_bytes(PREVIOUS)
    (d / "run" / "index.jsonl").write_text(json.dumps({"path": "old.jpg", "file": "old.npy"}) + "\n")


# --- a full disk: a 64 kB tmpfs (ENOSPC) ----------------------------------------------------------


@pytest.mark.slow  # about 10 s; a failed write stays quick
def test_a_full_disk_leaves_no_temporary_and_names_the_file(photos: Path, tmp_path: Path) -> None:
    """Regression: a full disk left `.x.npy.*.part` files and a `.vitcli-*` folder and said
    `internal error: OSError` (the closing flush of the discarded file failed too)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    runs = [f"patchify {photos} --size 224 --output-dir {disk}/run", f"patchify {photos} --size 224 -o {disk}/out.npy",
            f"embed {photos} {' '.join(TINY)} --size 224 --stage output --output-dir {disk}/run",
            f"patchify {CHELSEA} --size 1024 --grid-png {disk}/grid.png"]
    script = (f"mount -t tmpfs -o size=64k tmpfs {disk} && mkdir {disk}/run && printf '{PREVIOUS.decode()}' > {disk}/out.npy"
              f" && printf '{PREVIOUS.decode()}' > {disk}/run/old.npy && "
              f"""echo '{{"path": "o.jpg", "file": "old.npy"}}' > {disk}/run/index.jsonl && """
              + " && ".join(f'{{ "$PY" -m vitcli {r}; echo "exit $?" >&2; }}' for r in runs)
              + f" && cd {disk} && find . -type f | sort && cat out.npy run/old.npy")
    result = in_private_mount(script, tmp_path)
    err = result.stderr.decode().splitlines()
    assert len(err) == 2 * len(runs), result.stderr.decode()
    for (line, code), named in zip(zip(err[::2], err[1::2]), ["run", "out.npy", "run", "grid.png"]):
        assert line.startswith(f"vitcli: error: {disk}/{named}") and "No space left on device" in line, line
        assert code == "exit 1"
    files, contents = result.stdout.decode().split("\n./run/old.npy\n")
    assert files == "./out.npy\n./run/index.jsonl" and contents == PREVIOUS.decode() * 2


# --- --output-dir replaced as one unit ------------------------------------------------------------


def _two_runs(tmp_path: Path, old_count: int = 30) -> tuple[Path, Path, list[str], dict, dict]:
    """An old run of `old_count` images in DIR, and the snapshots of old and new (3 images) runs."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(old_count):
        Image.new("RGB", (32, 32), (i, 2 * i, 3 * i)).save(imgs / f"p{i:03d}.png")
    out = tmp_path / "out"
    old_paths = sorted(str(p) for p in imgs.iterdir())
    new_paths = old_paths[:3]
    for paths, folder in ((old_paths, out), (new_paths, tmp_path / "expected")):
        with open_sink(None, str(folder), paths) as sink:
            for i, p in enumerate(paths):
                value = i if folder == out else -i  # the new run's rows differ from the old ones
                sink.add(np.full((1, 4), value, np.int16), [{"path": p}])
    return out, imgs, new_paths, snapshot(out), snapshot(tmp_path / "expected")


FS_CALLS = ("rename", "replace", "chmod", "stat", "open", "fsync", "unlink", "rmdir", "scandir", "mkdir")


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_signal_at_any_step_of_the_output_dir_commit(tmp_path: Path, monkeypatch, exchange: bool) -> None:
    """SIGINT delivered at the k-th filesystem call of the commit, for every k: the folder is all old
    or all new, never a mix, and nothing temporary is left beside it."""
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    k, outcomes = 0, set()
    while True:
        case = tmp_path / f"k{k}"
        case.mkdir()
        out, _, new_paths, old, new = _two_runs(case, old_count=6)
        calls = {"n": 0}
        real = {name: getattr(os, name) for name in FS_CALLS}

        def counting(name):
            def call(*a, **kw):
                calls["n"] += 1
                if calls["n"] == k + 1:
                    os.kill(os.getpid(), signal.SIGINT)
                return real[name](*a, **kw)
            return call

        interrupted = False
        try:
            with open_sink(None, str(out), new_paths) as sink:
                for i, p in enumerate(new_paths):
                    sink.add(np.full((1, 4), -i, np.int16), [{"path": p}])
                for name in FS_CALLS:
                    monkeypatch.setattr(os, name, counting(name))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            for name in FS_CALLS:
                monkeypatch.setattr(os, name, real[name])
        state = snapshot(out)
        assert state in (old, new), (k, sorted(state))
        assert sorted(p.name for p in case.iterdir()) == ["expected", "imgs", "out"], k
        outcomes.add("new" if state == new else "old")
        if calls["n"] <= k and not interrupted:
            break  # k is past the commit's last call
        k += 1
    assert "new" in outcomes and k > 3  # a signal held back during the swap lets it finish


@pytest.mark.slow  # about 10 s; the in-process signal at every commit step stays quick
def test_signals_from_outside_during_an_output_dir_run(tmp_path: Path) -> None:
    """A real SIGTERM / SIGINT at random moments of a run replacing a 300-file --output-dir:
    afterwards the folder is all the old run or all the new one, and nothing temporary is left."""
    out, imgs, _, old, _ = _two_runs(tmp_path, old_count=300)
    pristine = tmp_path / "pristine"
    shutil.copytree(out, pristine)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    run = [sys.executable, "-m", "vitcli", "patchify", str(imgs), "-q", "--output-dir"]
    subprocess.run([*run, str(tmp_path / "ref")], env=env, check=True)
    new = snapshot(tmp_path / "ref")
    rng = random.Random(15)
    codes = []
    for trial in range(6):
        shutil.rmtree(out)
        shutil.copytree(pristine, out)
        proc = subprocess.Popen([*run, str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            proc.communicate(timeout=rng.uniform(0.2, 2.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(rng.choice([signal.SIGINT, signal.SIGTERM]))
            proc.communicate(timeout=60)
        state = snapshot(out)
        assert state in (old, new), (trial, proc.returncode, len(state))
        assert not leftovers(tmp_path), leftovers(tmp_path)
        codes.append(proc.returncode)
    assert set(codes) <= {0, 130, 143}, codes


def test_output_dir_replaces_the_old_run_whole(tmp_path: Path) -> None:
    """Regression: 3 new files under a new index beside 27 old ones; now exactly the new run."""
    out, _, new_paths, _, new = _two_runs(tmp_path)
    with open_sink(None, str(out), new_paths) as sink:
        for i, p in enumerate(new_paths):
            sink.add(np.full((1, 4), -i, np.int16), [{"path": p}])
    assert snapshot(out) == new


def test_output_dir_refuses_a_folder_holding_other_files(photos: Path, tmp_path: Path) -> None:
    """A folder with files no earlier run wrote is not replaced (the input images: refused before any
    is read, as inputs inside the folder the run replaces)."""
    own = tmp_path / "own"
    shutil.copytree(photos, own)
    before = snapshot(own)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README").write_text("mine")
    results = run_batch([["patchify", own, "--size", "64", "--output-dir", own],
                         ["patchify", photos, "--size", "64", "--output-dir", notes]], tmp_path)
    one_error_line(results[0], str(own), "is inside --output-dir")
    one_error_line(results[1], str(notes), "README")
    assert snapshot(own) == before and (notes / "README").read_text() == "mine"


def test_two_renames_killed_between_them_are_rolled_back(tmp_path: Path) -> None:
    """Without renameat2, a SIGKILL between moving the old folder aside and the new one in: the
    next run that writes there puts the old folder back first."""
    out, _, new_paths, old, _ = _two_runs(tmp_path, old_count=5)
    child = textwrap.dedent(f"""
        import os, signal, numpy as np
        from vitcli.io import atomic
        from vitcli.io.batch import open_sink
        atomic._exchange = lambda a, b: False
        rename, n = os.rename, [0]
        def dying(a, b):
            n[0] += 1
            if n[0] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            rename(a, b)
        with open_sink(None, {str(out)!r}, {new_paths!r}) as sink:
            sink.add(np.zeros((3, 4), np.int16), [{{"path": p}} for p in {new_paths!r}])
            os.rename = dying
    """)
    proc = subprocess.run([sys.executable, "-c", child], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and len(leftovers(tmp_path)) == 2  # .out…old and .out…new
    atomic.sweep(tmp_path)
    assert snapshot(out) == old and not leftovers(tmp_path)


# --- SIGKILL leftovers --------------------------------------------------------------------------------


KILLED = {
    "array": "from vitcli.io.arrays import write_bytes\n"
             "write_bytes({t!r} + '/out.npy', lambda f: (f.write(b'half'), f.flush(), os.kill(os.getpid(), 9)))",
    "stream": "from vitcli.io.batch import open_sink\n"
              "with open_sink({t!r} + '/emb.npy', None, ['a', 'b']) as s:\n"
              "    s.add(np.zeros((1, 8)), [{{'path': 'a'}}]); os.kill(os.getpid(), 9)",
    "folder": "from vitcli.io.batch import open_sink\n"
              "with open_sink(None, {t!r} + '/run', ['a', 'b']) as s:\n"
              "    s.add(np.zeros((1, 8)), [{{'path': 'a'}}]); os.kill(os.getpid(), 9)",
}


@pytest.mark.parametrize("kind", sorted(KILLED))
def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "t"
    target.mkdir()
    (target / "out.npy").write_bytes(PREVIOUS)
    live = target / atomic.temp_name("busy.npy")  # this test's own pid: a live owner, kept
    live.write_bytes(b"")
    other = target / ".x.npy.vitcli-tmp-00000000-1-abc.part"  # another host's, kept
    other.write_bytes(b"")
    code = "import os, numpy as np\n" + KILLED[kind].format(t=str(target))
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL
    dead = [p for p in leftovers(target) if Path(p) not in (live, other)]
    assert dead, "the killed writer should have left its temporary"
    result = run_batch([["patchify", CHELSEA, "--size", "32", "-o", target / "next.npy", "-q"]], tmp_path)[0]
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.iterdir()) == sorted(["out.npy", "next.npy", live.name, other.name])
    assert (target / "out.npy").read_bytes() == PREVIOUS


# --- every output checked before anything goes to standard output ----------------------------------


def test_nothing_on_stdout_when_a_later_output_cannot_be_written(tmp_path: Path) -> None:
    """Regression: `patchify a.jpg -o - --grid-png /missing/g.png` wrote 150 kB of .npy first."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    bad = {"folder missing": (tmp_path / "missing/x.png", "does not exist"),
           "parent a file": (tmp_path / "afile/x.png", "is not a folder"),
           "a folder": (tmp_path / "adir", "is a directory"),
           "name too long": (tmp_path / ("n" * 300 + ".png"), "name too long")}
    commands = [["patchify", CHELSEA, "-o", "-", "--grid-png"], ["attend", CHELSEA, *TINY, "-o", "-", "--overlay"],
                ["attend", CHELSEA, *TINY, "-o", "-", "--rollout"], ["posenc", "--dim", "64", "-o", "-", "--similarity"],
                ["figures", "similar", CHELSEA, *TINY, "-o", "-", "--png"], ["explain", CHELSEA, *TINY, "-o", "-", "--overlay"],
                ["view", CHELSEA, *TINY, "-o"]]
    cases = [[*cmd, path] for cmd in commands for path, _ in bad.values()]
    expect = [case for _ in commands for case in bad.values()]
    for path, words in [(tmp_path / "afile", "is not a folder"), (tmp_path / "afile/sub", "is not a folder"),
                        (tmp_path / ("n" * 300), "name too long")]:  # --output-dir (a missing one is made)
        cases.append(["embed", CHELSEA, CHELSEA.with_name("coffee.jpg"), *TINY, "--output-dir", path])
        expect.append((path, words))
    for result, (path, words) in zip(run_batch(cases, tmp_path), expect):
        one_error_line(result, str(path)[:60], words)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("cases.json", "results.json")) == ["adir", "afile"]


# --- an output naming an input ----------------------------------------------------------------------


def test_an_output_naming_an_input_is_refused(photos: Path, tmp_path: Path) -> None:
    """Regression: `patchify a.jpg -o a.jpg` overwrote the photo. Same path, a hard link, a symlink,
    a folder's image, the second image, the weights, the list, the array to unpatchify."""
    d = tmp_path / "in"
    shutil.copytree(photos, d)
    os.link(d / "a0.jpg", d / "hard.jpg")
    os.symlink(d / "a1.jpg", tmp_path / "soft.jpg")
    np.save(d / "p.npy", np.zeros((4, 768), np.uint8))
    (d / "list.txt").write_text(f"{d / 'a2.jpg'}\n")
    weights = tmp_path / "w.safetensors"
    from safetensors.numpy import save_file
    save_file({"x": np.zeros(2, np.float32)}, str(weights))
    cases = [
        (["patchify", d / "a0.jpg", "-o", d / "a0.jpg"], d / "a0.jpg"),
        (["patchify", d / "a0.jpg", "-o", d / "hard.jpg"], d / "hard.jpg"),
        (["patchify", d / "a1.jpg", "--grid-png", tmp_path / "soft.jpg"], tmp_path / "soft.jpg"),
        (["patchify", d, "--size", "64", "-o", d / "a3.jpg"], d / "a3.jpg"),
        (["patchify", "--from-list", d / "list.txt", "-o", d / "list.txt"], d / "list.txt"),
        (["patchify", "--unpatchify", d / "p.npy", "-o", d / "p.npy"], d / "p.npy"),
        (["attend", d / "a0.jpg", *TINY, "--overlay", d / "a0.jpg"], d / "a0.jpg"),
        (["attend", d / "a4.png", *TINY, "--rollout", d / "a4.npy"], d / "a4.png"),
        (["figures", "similar", d / "a0.jpg", "--to", d / "a5.jpg", *TINY, "--png", d / "a5.jpg"], d / "a5.jpg"),
        (["explain", d / "a0.jpg", *TINY, "--target", f"image:{d / 'a1.jpg'}", "-o", d / "a1.jpg"], d / "a1.jpg"),
        (["view", d / "a2.jpg", *TINY, "-o", d / "a2.jpg"], d / "a2.jpg"),
        (["embed", d / "a0.jpg", "--weights", weights, "-o", weights], weights),
    ]
    (d / "a4.png").write_bytes((d / "a4.jpg").read_bytes())  # --rollout a4.npy draws a4.png beside it
    before = {**snapshot(d), "w": hashlib.sha256(weights.read_bytes()).hexdigest()}
    for result, (_, named) in zip(run_batch([c for c, _ in cases], tmp_path), cases):
        one_error_line(result, f"{named}: ", "names an input")
    assert {**snapshot(d), "w": hashlib.sha256(weights.read_bytes()).hexdigest()} == before


# --- --json and standard output; files nobody named -----------------------------------------------------


STDOUT_OUTPUTS = [
    ["patchify", CHELSEA, "-o"], ["patchify", CHELSEA, "--grid-png"],
    ["embed", CHELSEA, *TINY, "-o"], ["attend", CHELSEA, *TINY, "-o"], ["attend", CHELSEA, *TINY, "--rollout"],
    ["attend", CHELSEA, *TINY, "--overlay"], ["attend", CHELSEA, *TINY, "--cosine"], ["attend", CHELSEA, *TINY, "--masks"],
    ["attend", CHELSEA, *TINY, "--distance"], ["attend", CHELSEA, *TINY, "--plot-distance"],
    ["explain", CHELSEA, *TINY, "--overlay"], ["posenc", "--dim", "64", "--similarity"], ["posenc", "--dim", "64", "-o"],
    ["figures", "filters", *TINY, "--png"], ["figures", "pca", CHELSEA, *TINY, "-o"],
    ["figures", "similar", CHELSEA, *TINY, "--png"], ["figures", "norms", CHELSEA, *TINY, "-o"],
]


def test_json_with_another_output_on_stdout_is_a_usage_error(tmp_path: Path) -> None:
    results = run_batch([[*c, "-", "--json"] for c in STDOUT_OUTPUTS] + [[*STDOUT_OUTPUTS[4], "-", "-o", "-"]], tmp_path)
    for result in results:
        assert result.returncode == 2 and result.stdout == b"", (result.args, result.stderr[-300:])
        assert "standard output" in result.stderr.decode(), result.args


@pytest.mark.slow  # about 17 s
def test_no_file_appears_that_was_not_named(tmp_path: Path) -> None:
    """Regression: `attend a.jpg --rollout -` also wrote rollout.png in the current folder. Every
    output on '-', then to named files elsewhere: the current folder stays empty."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    named = tmp_path / "named"
    named.mkdir()
    cases = [[*c, "-", "-q"] for c in STDOUT_OUTPUTS]
    cases += [[*c, named / f"f{i}.out", "-q"] for i, c in enumerate(STDOUT_OUTPUTS)]
    results = run_batch(cases, tmp_path, cwd=cwd)
    for result in results:
        assert result.returncode == 0, (result.args, result.stderr[-300:])
    assert list(cwd.iterdir()) == []
    expected = {f"f{i}.out" for i in range(len(STDOUT_OUTPUTS))} | {"f4.png"}  # --rollout FILE draws FILE.png
    assert {p.name for p in named.iterdir()} == expected


# --- --skip-errors: index lines in path order --------------------------------------------------------


def test_skip_errors_keeps_index_lines_in_path_order(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = random.Random(7)
    for i in range(14):
        if rng.random() < 0.4:
            (imgs / f"i{i:02d}.jpg").write_bytes(b"not a jpeg")
        else:
            Image.new("RGB", (40, 40), (i, i, i)).save(imgs / f"i{i:02d}.jpg")
    cases = [["patchify", imgs, "--size", "32", "--skip-errors", "--batch-size", "4", "-o", tmp_path / "a.npy", "-q"],
             ["patchify", imgs, "--size", "32", "--skip-errors", "--batch-size", "4", "--output-dir", tmp_path / "d", "-q"],
             ["embed", imgs, *TINY, "--size", "32", "--skip-errors", "--batch-size", "3", "-o", tmp_path / "e.npy", "-q"]]
    for result in run_batch(cases, tmp_path):
        assert result.returncode == 0, result.stderr
    expected = sorted(str(p) for p in imgs.iterdir())
    for index in (tmp_path / "a.index.jsonl", tmp_path / "d" / "index.jsonl", tmp_path / "e.index.jsonl"):
        paths = [json.loads(line)["path"] for line in index.read_text().splitlines()]
        assert paths == expected, index
