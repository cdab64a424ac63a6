"""`python -m data <format> --root <folder>`: prepare a data set (see pfld/cli/data.py, data/README.md)."""

from pfld.cli.data import main

if __name__ == "__main__":
    main()
