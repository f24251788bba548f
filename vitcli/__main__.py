"""`python -m vitcli` runs the command-line app (signal handlers before the heavy imports)."""

try:
    from vitcli.entry import main
except KeyboardInterrupt:  # before the handlers exist: still one line and 130
    import os

    os.write(2, b"vitcli: interrupted\n")
    raise SystemExit(130) from None

main()
