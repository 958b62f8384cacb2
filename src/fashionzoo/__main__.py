"""``python -m fashionzoo``: the command line."""

from fashionzoo.cli import main

main()
