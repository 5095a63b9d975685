"""``python -m lightbox.cli``: the ``lightbox`` command."""

import sys

from lightbox.cli import main

sys.exit(main())
