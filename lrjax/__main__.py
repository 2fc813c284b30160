"""``python -m lrjax``: the same as the ``lrjax`` command."""

import sys

from lrjax.cli import main

if __name__ == "__main__":
    sys.exit(main())
