"""``python -m msgstate``: the same as the ``msgstate`` command."""

from msgstate.cli import main

if __name__ == "__main__":
    main()
