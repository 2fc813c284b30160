"""``python -m lrjax``: the same as the ``lrjax`` command."""

import sys

from lrjax.cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
