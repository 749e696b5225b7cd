"""``python -m symdiff``: the same as the ``symdiff`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
