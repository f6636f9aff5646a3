import sys

from zo2bench.cli import main

sys.exit(main())
