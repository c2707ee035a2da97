"""`python -m components.predict --model PATH IMAGE...`"""

import sys

from components.predict.cli import main

sys.exit(main())
