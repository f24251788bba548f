"""`python -m vitcli` runs the command-line app."""

from vitcli.cli import main

main()
