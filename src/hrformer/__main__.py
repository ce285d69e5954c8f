"""``python -m hrformer``: the ``hrformer`` command line."""

import sys

from .cli import main

sys.exit(main())
