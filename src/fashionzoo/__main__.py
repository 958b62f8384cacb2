"""``python -m fashionzoo``: the command line."""

from fashionzoo.cli import main

if __name__ == "__main__":
    main()
