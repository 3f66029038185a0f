import sys

from epollshim.cli import main

sys.exit(main())
