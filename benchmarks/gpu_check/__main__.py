"""``python -m benchmarks.gpu_check``: the GPU check (:mod:`benchmarks.gpu_check.check`)."""

import sys

from benchmarks.gpu_check.check import main

sys.exit(main())
