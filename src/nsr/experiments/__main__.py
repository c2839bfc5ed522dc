"""``python -m nsr.experiments NAME [options]``: the same as ``nsr experiment NAME [options]``."""
import sys

from nsr.experiments import main

sys.exit(main())
