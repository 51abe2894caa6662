"""`python -m feeds`."""

import sys

from feeds.app import main

sys.exit(main())
