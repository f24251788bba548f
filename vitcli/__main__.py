"""`python -m vitcli` runs the command-line app (signal handlers before the heavy imports)."""

from vitcli.entry import main

main()
