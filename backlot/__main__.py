"""``python -m backlot``: the same as the ``backlot`` command."""
import sys

from backlot.cli.main import main

sys.exit(main())
