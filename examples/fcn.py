"""FCN-32s / 16s / 8s (voc-fcn*s) on a 500x500 image (GPU; 128x128 on CPU).

    python examples/fcn.py [--variant 8s] [--bf16] [--channels-last]
"""
import sys

from _common import main

from pydense import models

if __name__ == "__main__":
    variant = "8s"
    if "--variant" in sys.argv:
        i = sys.argv.index("--variant")
        variant = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    main(f"FCN-{variant}", models.FCN, (1, 3, 500, 500), (1, 3, 128, 128), variant=variant)
