"""`python -m workers`."""

import sys

from workers.app import main

sys.exit(main())
