"""``python -m jwpipe``: see :mod:`jwpipe.cli`."""

import sys

from .cli import main

sys.exit(main())
