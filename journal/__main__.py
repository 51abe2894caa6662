"""`python -m journal`: run the journal process."""

import sys

from journal.app import main

sys.exit(main())
