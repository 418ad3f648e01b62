"""`python -m wam_ros.cli` is the `wam` command."""

import sys

from wam_ros.cli import main

sys.exit(main())
