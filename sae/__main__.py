"""``python -m sae CMD ...`` and ``torchrun -m sae train ...``: the `sae` command."""

import sys

from sae.cli import main

sys.exit(main())
