import sys

from advscale.cli import main

sys.exit(main())
