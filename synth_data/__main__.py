"""`python -m crnn_synth_data ...` runs `crnn synth ...`."""

import sys

from crnn_synth_data.cli import main

raise SystemExit(main(sys.argv[1:]))
