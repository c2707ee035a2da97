"""`python -m containers.image_locks`: write or --check the image locks (`make lock`)."""

import sys

from containers.image_locks.cli import main

sys.exit(main())
