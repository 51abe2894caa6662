"""`python -m web`: run the web view."""

import sys

from web.app import main

sys.exit(main())
