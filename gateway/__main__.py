"""``python -m gateway`` is the ``plantgate`` command."""

import sys

from gateway.cli import main

sys.exit(main())
