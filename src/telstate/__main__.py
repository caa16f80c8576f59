"""``python -m telstate``: the same as the ``telstate`` command."""

import sys

from .cli import main

sys.exit(main())
