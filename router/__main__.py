"""`python -m router`."""

import sys

from router.app import main

sys.exit(main())
