"""`python -m synth_data ...` runs `crnn synth ...`."""

import sys

from synth_data.cli import main

raise SystemExit(main(sys.argv[1:]))
