"""``python -m fashionzoo``: the command line."""

from fashionzoo.cli.common import main

if __name__ == "__main__":
    main()
