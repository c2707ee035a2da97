"""`python -m components.serve --model MODEL_DIR [--port 8080]`"""

import sys

from components.serve.cli import main

sys.exit(main())
