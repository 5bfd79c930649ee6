"""``python -m annotation``: see :mod:`annotation.cli`."""
import sys

from annotation.cli import main

sys.exit(main())
