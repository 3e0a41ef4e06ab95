"""``python -m deepnotes`` runs the command line."""

import sys

from deepnotes.cli import main

sys.exit(main())
