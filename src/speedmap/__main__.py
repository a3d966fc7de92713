"""``python -m speedmap``."""

from speedmap.cli import main

if __name__ == "__main__":
    main()
