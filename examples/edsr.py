"""EDSR baseline x4 on a 256x256 low-resolution image (GPU; 32x32 on CPU). --paper: EDSR
(32 blocks, 256 features, res_scale 0.1).

    python examples/edsr.py [--paper] [--bf16] [--channels-last]
"""
import sys

from _common import main

from pydense import models

if __name__ == "__main__":
    paper = "--paper" in sys.argv
    if paper:
        sys.argv.remove("--paper")
    main("EDSR x4" if paper else "EDSR baseline x4", models.edsr if paper else models.edsr_baseline,
         (1, 3, 256, 256), (1, 3, 32, 32), trainable_only=True, scale=4)
