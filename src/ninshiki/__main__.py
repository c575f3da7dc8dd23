"""`python -m ninshiki ...`, which `torchrun -m ninshiki` needs."""
import sys

from ninshiki.cli import main

sys.exit(main())
