"""`python -m aggregator`."""

import sys

from aggregator.app import main

sys.exit(main())
