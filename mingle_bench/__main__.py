import sys

from mingle_bench.cli import main

sys.exit(main())
