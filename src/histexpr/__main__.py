"""``python -m histexpr`` runs the command-line interface."""

from histexpr.cli import main

if __name__ == "__main__":
    main()
