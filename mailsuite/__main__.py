"""`python -m mailsuite` runs the admin command."""

import sys

from mailsuite.cli import main

sys.exit(main())
