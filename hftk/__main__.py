"""`python -m hftk ...`, which is also what `torchrun -m hftk` and `accelerate launch -m hftk` run."""

import sys

from hftk.cli import main

sys.exit(main())
