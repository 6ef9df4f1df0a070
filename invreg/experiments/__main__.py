import sys

from invreg.experiments.runner import main

sys.exit(main())
