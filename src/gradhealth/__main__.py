"""``python -m gradhealth``: the command-line interface."""

from gradhealth.cli import main

if __name__ == "__main__":
    main()
