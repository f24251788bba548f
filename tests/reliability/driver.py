"""Run many vitcli command lines in one Python process, each exactly as the console script would.

    python -m tests.reliability.driver CASES.json RESULTS.json

CASES.json holds a list of argument lists. Each is run through `vitcli.cli.main()` with
`sys.argv` set and file descriptors 1 and 2 redirected to files (so everything the process
writes is caught, as in a subprocess); RESULTS.json gets [{"code", "stdout", "stderr"}] in order.
One process per batch saves the interpreter and torch start-up that dominates each run.
"""

import json
import os
import sys
import tempfile


def run_one(args: list[str]) -> dict:
    """Exit code and captured output of `vitcli ARGS` run in this process."""
    from vitcli.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush(), sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
        sys.argv = ["vitcli", *args]
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
        out.seek(0), err.seek(0)
        return {"code": code, "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}


def main() -> None:
    cases_file, results_file = sys.argv[1:3]
    cases = json.loads(open(cases_file).read())
    results = [run_one(args) for args in cases]
    with open(results_file, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
