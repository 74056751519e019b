import sys

from histozoo.cli import main

sys.exit(main())
