"""No hangs, and the promised standard error and standard output (issue 15).

- FIFOs, sockets and devices in a folder, a glob or named directly are refused (or skipped with
  --skip-errors) without being opened; quoted `**` globs survive symbolic-link loops and every file
  is taken once by its resolved path.
- SIGINT / SIGTERM end the process with 130 / 143 and one line, while decoding threads are busy,
  while a decoding thread or the main thread is blocked in a read, during a forward pass, and
  during start-up (SIGINT at generated delays after spawn and at each import of the start-up, for
  the console script and `python -m`; a library import keeps its handlers). The time to exit is
  measured with a generous bound.
- Exit 1 is exactly one line on standard error: names with control characters or bytes that are
  not UTF-8 are repr-quoted; warnings never reach the terminal (--debug shows them); a closed,
  full or broken standard output, an ASCII-only terminal, a name too long, a malformed
  --unpatchify array and nonsense numeric options each get a line naming their source.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_clean_error, sampled
from tests.reliability.corpus import ROOT
from tests.reliability.helpers import run_batch

TINY = ["--dim", "64", "--depth", "2", "--heads", "2"]
ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
EXIT_WITHIN = 5.0  # seconds from the signal to the exit (the promise is one second; generous for CI)


def _png(path: Path, h: int = 32, w: int = 32, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _vitcli(*args, **kw) -> subprocess.Popen:
    """`python -m vitcli ARGS` as a child with SIGINT at its default (a background shell ignores it)."""
    return subprocess.Popen([sys.executable, "-m", "vitcli", *map(str, args)], cwd=ROOT, env=ENV,
                            stdout=kw.pop("stdout", subprocess.PIPE), stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


# ---- FIFOs, sockets, devices -------------------------------------------------------------------

def _special(folder: Path, kind: str) -> Path:
    """A folder holding one good image and one special file named like an image."""
    folder.mkdir(parents=True)
    _png(folder / "a.png")
    odd = folder / "b.png"
    if kind == "fifo":
        os.mkfifo(odd)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(odd))
        s.close()
    else:
        odd.symlink_to("/dev/zero")
    return odd


KINDS = {"fifo": "FIFO", "socket": "socket", "device": "device"}


def test_special_files_are_refused_before_anything_opens_them(tmp_path: Path) -> None:
    cases, expect = [], []
    for kind, word in KINDS.items():
        odd = _special(tmp_path / kind, kind)
        for source in (odd.parent, f"{odd.parent}/*.png", f"{odd.parent}/**/*.png", odd):
            cases.append(["patchify", source, "-q", "-o", tmp_path / f"{kind}.npy"])
            expect.append((str(odd), word))
        cases.append(["embed", odd.parent, *TINY, "--skip-errors", "--output-dir", tmp_path / f"{kind}-out", "-q"])
        expect.append(None)
    for result, want in zip(run_batch(cases, tmp_path), expect):
        if want is None:  # skipped with its reason; the good image written
            assert result.returncode == 0, result.stderr
            assert "b.png" in result.stderr.decode() and "not an image file" in result.stderr.decode()
            continue
        assert_clean_error(result, *want)
    assert not any(tmp_path.glob("*.npy"))


def test_a_pipe_handed_over_open_is_still_read(tmp_path: Path) -> None:
    """/dev/stdin on a pipe (as `<(…)` gives /dev/fd/N) never blocks on open: it stays allowed."""
    image = _png(tmp_path / "a.png").read_bytes()
    done = subprocess.run([sys.executable, "-m", "vitcli", "patchify", "/dev/stdin", "-q", "-o", tmp_path / "x.npy"],
                          input=image, cwd=ROOT, env=ENV, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "x.npy").shape == (196, 768)


# ---- globs and duplicates ----------------------------------------------------------------------

def test_globs_survive_link_loops_and_take_each_file_once(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    _png(tree / "a.png"), _png(tree / "sub" / "c.png")
    (tree / "loop").symlink_to(".")  # glob.glob(recursive=True) on two loops does not finish
    (tree / "sub" / "up").symlink_to("..")
    (tree / "alias.png").symlink_to("a.png")
    script = ("import json, sys; from vitcli.io.inputs import expand_inputs; "
              "print(json.dumps(expand_inputs(sys.argv[1:]).paths))")
    args = [f"{tree}/**/*.png", f"{tree}/*.png", str(tree), f"{tree}/a.png", f"{tree}/./a.png", f"{tree}/alias.png",
            f"{tree}/loop/a.png"]
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=ENV, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    paths = json.loads(done.stdout)
    assert sorted(os.path.realpath(p) for p in paths) == [str(tree / "a.png"), str(tree / "sub" / "c.png")]


# ---- signals -----------------------------------------------------------------------------------

def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _signal_and_time(proc: subprocess.Popen, sig: int, ready, limit: float = 120) -> tuple[float, str]:
    """Wait until `ready(pid)`, send `sig`, return (seconds to exit, stderr)."""
    try:
        start = time.monotonic()
        while not ready(proc.pid):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() - start < limit, "never got busy"
            time.sleep(0.02)
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        return time.monotonic() - sent, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()


def _check_exit(proc: subprocess.Popen, sig: int, took: float, err: str) -> None:
    code, word = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}[sig]
    assert proc.returncode == code, err
    assert err.strip() == f"vitcli: {word}", err
    assert took < EXIT_WITHIN, took


@pytest.fixture(scope="module")
def many_images(tmp_path_factory) -> Path:
    """40 different 1536×1536 PNGs: seconds of decoding for two threads."""
    folder = tmp_path_factory.mktemp("many")
    base = np.random.default_rng(0).integers(0, 256, (1536, 1536, 3), dtype=np.uint8)
    for i in range(40):
        base[0, 0, 0] = i
        Image.fromarray(base).save(folder / f"{i:02d}.png", compress_level=1)
    return folder


@pytest.mark.slow  # 40 images made for it (about 18 s); a thread blocked in a read stays quick
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_decoding_threads_are_busy(tmp_path: Path, many_images: Path, sig: int) -> None:
    proc = _vitcli("embed", many_images, *TINY, "--workers", "2", "--batch-size", "2", "-q",
                   "--output-dir", tmp_path / "out")
    took, err = _signal_and_time(proc, sig, lambda pid: _threads(pid) >= 4 and (tmp_path / "out").parent.exists()
                                 and _rss(pid) > 400e6)
    _check_exit(proc, sig, took, err)


def _rss(pid: int) -> int:
    try:
        line = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0
    return int(line.split()[1]) * 1024


@sampled("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_a_decoding_thread_is_blocked_in_a_read(tmp_path: Path, sig: int) -> None:
    """A pipe that never gets data, handed over as /dev/fd/N beside other images: a decoding thread
    blocks in its read; the interpreter's exit would wait for that thread for ever."""
    images = [_png(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    read_end, write_end = os.pipe()
    try:
        proc = _vitcli("embed", f"/dev/fd/{read_end}", *images, *TINY, "--workers", "2", "-q", "-o",
                       tmp_path / "x.npy", pass_fds=(read_end,))
        took, err = _signal_and_time(proc, sig, lambda pid: _rss(pid) > 400e6 and _threads(pid) >= 3)
    finally:
        os.close(read_end), os.close(write_end)
    _check_exit(proc, sig, took, err)
    assert not (tmp_path / "x.npy").exists()


@sampled("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_the_main_thread_is_blocked_reading_stdin(sig: int) -> None:
    proc = _vitcli("patchify", "-", stdin=subprocess.PIPE)
    try:
        took, err = _signal_and_time(proc, sig, _after(1.0, lambda pid: _rss(pid) > 40e6))
    finally:
        proc.stdin.close()
    _check_exit(proc, sig, took, err)


def _after(seconds: float, ready):
    """`ready`, then `seconds` more (the read has started by then)."""
    since: list[float] = []

    def check(pid: int) -> bool:
        if not since and ready(pid):
            since.append(time.monotonic())
        return bool(since) and time.monotonic() - since[0] > seconds

    return check


def test_signal_during_a_long_forward_pass() -> None:
    """16,385 tokens through torch's intra-op threads: one attention call takes long."""
    image = ROOT / "sample_images" / "chelsea.jpg"
    proc = _vitcli("embed", image, "--dim", "64", "--depth", "4", "--heads", "1", "--size", "2048", "-q")
    took, err = _signal_and_time(proc, signal.SIGTERM, lambda pid: _rss(pid) > 700e6)
    _check_exit(proc, signal.SIGTERM, took, err)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2, 0.35])
def test_ctrl_c_during_start_up(delay: float) -> None:
    """SIGINT while typer, rich (and torch) are still being imported: 130 and one line. Counted from
    the watchdog thread's start (vitcli's first code; the interpreter's own start-up comes before)."""
    proc = _vitcli("embed", ROOT / "sample_images" / "chelsea.jpg", *TINY, "-q")
    took, err = _signal_and_time(proc, signal.SIGINT, _after(delay, lambda pid: _threads(pid) >= 2))
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal")
    _check_exit(proc, signal.SIGINT, took, err)


# pip's console-script wrapper for `vitcli = "vitcli.entry:main"`, run by this interpreter
CONSOLE_SCRIPT = """import re
import sys
from vitcli.entry import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""
SPAWN_DELAYS = [0, *sorted({round(2 ** (k / 2)) for k in range(2, 18)}), 400]  # ms: 0, 2, 3, 4, 6, … 362, 400


def _guarded(pid: int) -> bool:
    """SIGTERM is caught: vitcli's start-up guard (or its later handlers) is in place. The interpreter
    never catches SIGTERM itself, so this is the first sign from outside that vitcli code has run."""
    try:
        line = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


GUARD_LINE = next((i for i, l in enumerate((ROOT / "vitcli" / "__init__.py").read_text().splitlines(), 1)
                   if l.startswith("    _guard_start_up()")), 0)
FRAME = re.compile(r'File "' + re.escape(str(ROOT / "vitcli")) + r'/([^"]+)", line (\d+), in (\S+)')


def _before_vitcli(code: int, err: str) -> bool:
    """What the interpreter does with a SIGINT before vitcli's guard is its own business: killed by
    it with nothing written, a KeyboardInterrupt traceback from its start-up (site's .pth files,
    runpy, the console script's `import re`), "failed to set __main__.__loader__", an interrupt it
    swallows ("Exception ignored in" an import lock's weakref callback) and runs on after. Each
    seen here; the test asks only that no vitcli code past the guard shows in it: its frames, if
    any, are the statements of vitcli/__init__.py up to the guard (microseconds: a signal pending
    when that module starts is raised there), and no vitcli error line."""
    early = all(name == "__init__.py" and (where != "<module>" or int(line) <= GUARD_LINE)
                for name, line, where in FRAME.findall(err))
    return early and "vitcli: error" not in err


def _popen(args: list) -> subprocess.Popen:
    return subprocess.Popen(list(map(str, args)), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _interrupt_at(args: list, seconds: float) -> tuple:
    """Spawn, SIGINT `seconds` later; (guard seen just before the signal, exit code, stdout, stderr)."""
    proc = _popen(args)
    time.sleep(seconds)
    guarded = _guarded(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, err = (stream.decode() for stream in proc.communicate(timeout=60))
    return guarded, proc.returncode, out, err


def _guard_appears(args: list) -> float:
    """Seconds from spawn until the guard is seen (polled every 0.1 ms), then the run is killed."""
    proc, start = _popen(args), time.monotonic()
    try:
        while not _guarded(proc.pid):
            assert proc.poll() is None and time.monotonic() - start < 60, "the guard never appeared"
            time.sleep(0.0001)
        return time.monotonic() - start
    finally:
        proc.kill()
        proc.communicate()


def _start_up_args(tmp_path: Path, form: str, command: str) -> list:
    """The command line of `vitcli COMMAND` through pip's console script or `python -m vitcli`."""
    script = tmp_path / "vitcli"
    script.write_text(CONSOLE_SCRIPT)
    head = [sys.executable, script] if form == "console script" else [sys.executable, "-m", "vitcli"]
    return [*head, *([command, ROOT / "sample_images" / "chelsea.jpg", *TINY, "-q"] if command == "embed" else [command])]


@pytest.mark.parametrize("command, form", [  # about 12 s each: the quick run keeps `python -m vitcli embed`
    pytest.param("embed", "console script", marks=pytest.mark.slow), ("embed", "python -m"),
    pytest.param("--help", "console script", marks=pytest.mark.slow),
    pytest.param("--help", "python -m", marks=pytest.mark.slow)])
def test_ctrl_c_at_any_moment_from_spawn(tmp_path: Path, form: str, command: str) -> None:
    """SIGINT at SPAWN_DELAYS ms after spawn, then every 0.2 ms from 4 ms before to 1 ms after the
    moment the guard appeared in a first run (the few ms in which vitcli's first modules are
    imported: without the guard, a traceback from vitcli/entry.py or vitcli/signals.py). Once the
    guard is seen installed (the first statements of vitcli/__init__.py, before any other import)
    the exit is 130 with the one line, never a traceback; before it, only the interpreter's own
    outcomes (`_before_vitcli`). A `--help` that already finished (its text on standard output)
    may end with 0, or with -SIGINT and nothing on stderr, when the signal meets its exit (after the
    last check for a signal, in os._exit), whether or not the guard was seen."""
    args = _start_up_args(tmp_path, form, command)
    appears = _guard_appears(args)
    moments = [d / 1000 for d in SPAWN_DELAYS] + [max(0.0, appears + k / 5000) for k in range(-20, 6)]
    seen = []
    for seconds in moments:
        guarded, code, out, err = _interrupt_at(args, seconds)
        seen.append(guarded)
        if code == 130 and err == "vitcli: interrupted\n":
            continue
        case = (round(seconds * 1000, 1), guarded, code, err)
        finished = "Usage" in out and code in (0, -signal.SIGINT) and not err  # the signal met the exit
        assert finished or not guarded, case
        assert finished or _before_vitcli(code, err), case
    assert any(seen), "the start-up guard was never seen installed"


# Loaded by the child through PYTHONPATH: a real SIGINT to itself at the K-th import after the
# interpreter starts importing the package `vitcli` (K = 0: before vitcli/__init__.py runs).
SIGINT_AT_IMPORT = """import os, sys
_at, _sent, _n = int(os.environ["SIGINT_AT_IMPORT"]), os.environ["SIGINT_SENT"], [None]
def _hook(event, args):
    if event == "import" and (_n[0] is not None or args[0] == "vitcli"):
        _n[0] = 0 if _n[0] is None else _n[0] + 1
        if _n[0] == _at:
            open(_sent, "w").close()
            os.kill(os.getpid(), 2)
sys.addaudithook(_hook)
"""
IMPORT_STEPS = [*range(13), *(round(2 ** (k / 2)) for k in range(8, 23))]  # 0 … 12, 16, 23, 32, … 1448


@pytest.mark.parametrize("form, steps", [pytest.param("console script", IMPORT_STEPS, marks=pytest.mark.slow),  # 7-18 s
                                         ("python -m", IMPORT_STEPS[:13])])
@pytest.mark.parametrize("command", ["embed", "--help"])
def test_ctrl_c_at_each_import_of_the_start_up(tmp_path: Path, form: str, steps: list, command: str) -> None:
    """SIGINT raised by the child itself as it starts its K-th import counted from the package
    `vitcli` (vitcli.entry, signal, vitcli.signals, vitcli.cli, typer, … rich, torch): the few ms
    that spawn delays hit only by chance. K = 0 is before vitcli's first statement (the
    interpreter's outcome, `_before_vitcli`); from K = 1 on, 130 and the one line."""
    (tmp_path / "sitecustomize.py").write_text(SIGINT_AT_IMPORT)
    args = _start_up_args(tmp_path, form, command)
    for step in steps:
        sent = tmp_path / f"sent{step}"
        env = {**ENV, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "SIGINT_AT_IMPORT": str(step), "SIGINT_SENT": str(sent)}
        proc = subprocess.run(list(map(str, args)), cwd=ROOT, env=env, capture_output=True, timeout=120,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        if not sent.exists():
            break  # the run had fewer imports
        err = proc.stderr.decode()
        if step == 0:
            assert _before_vitcli(proc.returncode, err), (step, proc.returncode, err)
        else:
            assert (proc.returncode, err) == (130, "vitcli: interrupted\n"), step
    assert step >= 12  # the sweep went past vitcli's own first modules


def test_a_library_import_leaves_the_signal_handlers_alone(tmp_path: Path) -> None:
    """Only the command installs the start-up guard: `import vitcli` (also from a script or `-m` of
    another name) keeps the interpreter's handlers."""
    check = "import signal, vitcli; print(signal.getsignal(2) is signal.default_int_handler, signal.getsignal(15) is signal.SIG_DFL)"
    script = tmp_path / "user.py"
    script.write_text(check)
    for args in (["-c", check], [script], ["-m", "user"]):
        proc = subprocess.run([sys.executable, *map(str, args)], cwd=tmp_path, env={**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"},
                              capture_output=True, text=True, timeout=120)
        assert proc.stdout.split() == ["True", "True"], (args, proc.stdout, proc.stderr)


# ---- exactly one line on standard error --------------------------------------------------------

ODD_NAMES = ["new\nline.png", "tab\t.png", "esc\x1b[31m.png", "cr\r.png", "bell\x07.png", "caf\udce9.png"]


def test_names_with_control_characters_or_non_utf8_bytes_are_quoted(tmp_path: Path) -> None:
    cases, names = [], []
    for i, name in enumerate(ODD_NAMES):
        folder = tmp_path / str(i)
        folder.mkdir()
        empty = folder / name
        empty.write_bytes(b"")
        for path in (empty, folder / ("missing-" + name)):
            cases.append(["patchify", path, "-o", tmp_path / f"{i}.npy"])
            names.append(repr(str(path)))
    for result, quoted in zip(run_batch(cases, tmp_path), names):
        assert_clean_error(result, quoted.encode("ascii", "backslashreplace").decode())


def test_warnings_never_reach_the_terminal_and_debug_shows_them(tmp_path: Path) -> None:
    """A command that raises a numpy overflow, a torch UserWarning and Pillow's DecompressionBombWarning."""
    script = """
import sys, warnings
import numpy as np, torch
from PIL import Image
import importlib
api = importlib.import_module("vitcli.api.patchify")
original = api.patchify
def noisy(*args, **kw):
    np.float16(60000) * np.float16(60000)                     # RuntimeWarning: overflow
    torch.tensor([1.0]).resize_(2).numpy(); warnings.warn("torch says", UserWarning)
    warnings.warn("bomb", Image.DecompressionBombWarning)
    return original(*args, **kw)
api.patchify = noisy
from vitcli.cli import main
sys.argv = ["vitcli", *sys.argv[1:]]
main()
"""
    image = _png(tmp_path / "a.png")
    quiet, debug = (subprocess.run([sys.executable, "-c", script, "patchify", image, "-q", *extra], cwd=ROOT, env=ENV,
                                   capture_output=True, timeout=120) for extra in ([], ["--debug"]))
    assert quiet.returncode == 0 and quiet.stderr == b"", quiet.stderr
    assert debug.returncode == 0
    for word in (b"overflow", b"torch says", b"bomb"):
        assert word in debug.stderr, debug.stderr


def test_decompression_bomb_band_is_refused_in_every_thread(tmp_path: Path) -> None:
    """Between 1x and 2x --max-pixels Pillow only warns; the check does not depend on a warning filter."""
    images = [_png(tmp_path / f"{i}.png", 40, 40, seed=i) for i in range(4)]
    cases = [["patchify", *images, "--max-pixels", "1000", "--workers", "2", "-q", "-o", tmp_path / "x.npy"]]
    (result,) = run_batch(cases, tmp_path)
    assert_clean_error(result, str(images[0]), "more than 1,000 pixels")


# ---- standard output closed, full or broken; ASCII terminals -----------------------------------

def _sh(command: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], cwd=tmp_path, env={**ENV, "PY": sys.executable, **env},
                          capture_output=True, timeout=120)


STDOUT_CASES = {"table": ["patchify", "a.png"], "json": ["patchify", "a.png", "--json"],
                "array": ["patchify", "a.png", "--size", "512", "-q", "-o", "-"], "version": ["--version"]}


@pytest.mark.parametrize("name", list(STDOUT_CASES))
def test_closed_full_or_broken_standard_output_is_one_line(tmp_path: Path, name: str) -> None:
    _png(tmp_path / "a.png")
    args = " ".join(STDOUT_CASES[name])
    for redirect, words in ((">&-", "is closed"), ("> /dev/full", "No space left on device")):
        result = _sh(f'"$PY" -m vitcli {args} {redirect}', tmp_path)
        assert_clean_error(result, "standard output", words)
    if name == "array":  # 786 kB: the reader leaves after 10 bytes
        result = _sh(f'"$PY" -m vitcli {args} | head -c 10 > /dev/null; exit 0', tmp_path)
        lines = result.stderr.decode().splitlines()
        assert lines == ["vitcli: error: standard output: closed by the reader (broken pipe); nothing more was written"]


@pytest.mark.slow  # about 15 s; test_tables_80.py's tables stay quick
def test_ascii_only_terminal_gets_ascii_tables(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    for args in ("patchify a.png", f"embed a.png {' '.join(TINY)}", f"attend a.png {' '.join(TINY)}",
                 f"posenc {' '.join(TINY)}"):
        result = _sh(f'"$PY" -m vitcli {args}', tmp_path, PYTHONIOENCODING="ascii")
        assert result.returncode == 0, result.stderr
        text = result.stdout.decode("ascii")  # nothing but ASCII
        assert "+---" in text and "|" in text and "x" in text, text


# ---- names too long, non-UTF-8 names in the index ----------------------------------------------

def test_names_too_long_for_the_file_system(tmp_path: Path) -> None:
    image, long = _png(tmp_path / "a.png"), "x" * 300
    cases = [["patchify", image, "-o", tmp_path / f"{long}.npy"], ["patchify", image, "--grid-png", tmp_path / f"{long}.png"],
             ["embed", image, *TINY, "--output-dir", tmp_path / long], ["patchify", tmp_path / f"{long}.png"]]
    for result in run_batch(cases, tmp_path):
        assert "too long" in assert_clean_error(result, long).lower()


def test_non_utf8_names_are_kept_in_the_index(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, raw in enumerate([b"caf\xe9.png", b"new\nline.png", b"plain.png"]):
        _png(Path(os.fsdecode(bytes(folder) + b"/" + raw)), seed=i)
    (result,) = run_batch([["embed", folder, *TINY, "--output-dir", tmp_path / "out", "-q"]], tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out" / "index.jsonl").read_bytes().decode("utf-8")  # valid UTF-8
    paths = [os.fsencode(json.loads(line)["path"]) for line in text.splitlines()]
    assert sorted(os.path.basename(p) for p in paths) == [b"caf\xe9.png", b"new\nline.png", b"plain.png"]


# ---- nonsense options and malformed --unpatchify arrays ----------------------------------------

IMAGE = str(ROOT / "sample_images" / "chelsea.jpg")
OPTION_CASES = [
    *[(["patchify", IMAGE, opt, v], name) for opt, name in (("--max-pixels", "--max-pixels"), ("--max-patches", "--max-patches"),
                                                            ("-p", "--patch-size"), ("--batch-size", "--batch-size"),
                                                            ("--workers", "--workers")) for v in ("0", "-1")],
    *[(["embed", IMAGE, *TINY, opt, v], opt) for opt in ("--dim", "--depth", "--heads", "-p") for v in ("0", "-3")],
    *[(["embed", IMAGE, *TINY, opt, v], opt) for opt in ("--mlp-ratio", "--eps") for v in ("0", "-1", "nan", "inf")],
    *[(["figures", "norms", IMAGE, *TINY, opt, v], opt) for opt in ("--k", "--norm-threshold") for v in ("-1", "nan", "inf")],
    (["figures", "norms", IMAGE, *TINY, "--top", "0"], "--top"),
    *[(["patchify", IMAGE, "-p", p, *size], "--patch-size") for p in ("100000", "300") for size in ([], ["--size", "224x160"])],
    *[([*cmd, "--size", v], "--size") for cmd in (["patchify", IMAGE], ["info", *TINY]) for v in ("0", "0x0", "-5x3", "nan", "big")],
    *[(["posenc", *TINY, "--grid", v], "--grid") for v in ("0", "0x5", "ax5", "inf")],
]


def test_nonsense_numeric_options_name_the_option(tmp_path: Path) -> None:
    results = run_batch([args for args, _ in OPTION_CASES], tmp_path)
    for (args, option), result in zip(OPTION_CASES, results):
        line = assert_clean_error(result, option)
        assert "None" not in line and "internal error" not in line, (args, line)


def _arrays(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    good = np.zeros((196, 768), np.uint8)
    made = {"ndim3": np.zeros((2, 3, 4), np.uint8), "scalar": np.float32(3), "strings": good.astype("U1"),
            "structured": np.zeros((196, 768), [("a", "u1")]), "complex": good.astype(np.complex64),
            "bool": good.astype(bool), "no patches": np.zeros((0, 768), np.uint8), "empty rows": np.zeros((4, 0), np.uint8),
            "length not P*P*3": np.zeros((196, 770), np.uint8), "not a square grid": np.zeros((195, 768), np.uint8)}
    paths = {}
    for name, array in made.items():
        paths[name] = folder / f"{name.replace(' ', '_')}.npy"
        np.save(paths[name], array)
    paths["object"] = folder / "object.npy"
    np.save(paths["object"], np.array([1, "a"], dtype=object), allow_pickle=True)
    paths["pickled"] = folder / "pickled.npy"
    paths["pickled"].write_bytes(__import__("pickle").dumps([1, 2]))
    paths["truncated"] = folder / "truncated.npy"
    np.save(paths["truncated"], good)
    paths["truncated"].write_bytes(paths["truncated"].read_bytes()[:1000])
    paths["empty file"] = folder / "empty.npy"
    paths["empty file"].write_bytes(b"")
    paths["fifo"] = folder / "fifo.npy"
    os.mkfifo(paths["fifo"])
    return paths


def test_malformed_unpatchify_arrays_name_the_file(tmp_path: Path) -> None:
    arrays = _arrays(tmp_path / "arrays")
    cases = [["patchify", "--unpatchify", path, "-o", tmp_path / f"back{ext}"] for path in arrays.values()
             for ext in (".png", ".npy")]
    cases.append(["patchify", "--unpatchify", arrays["not a square grid"], "--grid-size", "3x3", "-o", tmp_path / "b.png"])
    for args, result in zip(cases, run_batch(cases, tmp_path)):
        line = assert_clean_error(result, str(args[2]))
        assert "internal error" not in line, line
    assert not any(tmp_path.glob("back*"))


def test_the_command_ends_without_teardown_but_with_its_exit_handlers(tmp_path: Path) -> None:
    """The console script leaves by os._exit after the atexit handlers (no teardown of torch's
    modules): an atexit handler registered in the process still runs, standard output is complete,
    and the exit codes stay 0 / 1 / 2."""
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "atexit-ran"
    (site / "sitecustomize.py").write_text(
        f"import atexit\natexit.register(lambda: open({str(marker)!r}, 'a').write('x'))\n")
    env = {**ENV, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}
    image = ROOT / "sample_images" / "chelsea.jpg"
    cases = [(["patchify", image, "-o", "-"], 0), (["patchify", tmp_path / "missing.jpg"], 1), (["embed"], 2)]
    for args, code in cases:
        r = subprocess.run([sys.executable, "-m", "vitcli", *map(str, args)], env=env, cwd=tmp_path,
                           capture_output=True, timeout=120)
        assert r.returncode == code, (args, r.stderr)
        assert marker.read_text() == "x", args
        marker.unlink()
        if code == 0:  # 196 patches of 16·16·3 values, every byte there
            import io

            assert np.load(io.BytesIO(r.stdout)).shape == (196, 768)


def test_an_interrupt_wrapped_in_another_error_is_an_interrupt() -> None:
    """Python 3.11 wraps a KeyboardInterrupt raised in a class body's __set_name__ (a dataclass being
    imported) in a RuntimeError: found by the spawn test as "internal error: RuntimeError: Error
    calling __set_name__…" plus the interrupt line. It is exit 130 and the one line."""
    code = ("import sys, vitcli.cli as c\n"
            "def app(args):\n"
            "    try:\n        raise KeyboardInterrupt\n"
            "    except KeyboardInterrupt as e:\n        raise RuntimeError(\"Error calling __set_name__\") from e\n"
            "c._run_app = app\nsys.argv = ['vitcli', '--help']\nc.main()\n")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, cwd=ROOT, capture_output=True, timeout=120)
    assert (r.returncode, r.stderr.decode()) == (130, "vitcli: interrupted\n")
