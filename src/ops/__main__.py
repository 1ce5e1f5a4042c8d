"""`python -m ops`: the same as the `stripe-sync` command."""

import sys

from ops.cli import main

sys.exit(main())
