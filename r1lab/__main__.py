"""``python -m r1lab``: the ``r1lab`` command."""

import sys

from r1lab.cli import main

if __name__ == "__main__":
    sys.exit(main())
