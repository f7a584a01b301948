"""``python -m tuillm.tui.cli``: the same as the ``tuillm`` command."""

import sys

from tuillm.tui.cli import main

sys.exit(main())
