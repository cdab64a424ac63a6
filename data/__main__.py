"""`python -m data <format> --root <folder>`: prepare a data set (see pfld/data/cli.py, data/README.md)."""

from pfld.data.cli import main

if __name__ == "__main__":
    main()
