"""``python -m kube_balance``: the command line."""

import sys

from .cli import main

sys.exit(main())
