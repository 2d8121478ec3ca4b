import sys

from berth_client.cli import main

sys.exit(main())
