"""Dilation8 (front end + large context module + bilinear x8) at VOC's deploy size: a 500x500
image reflection-padded by 186 to 900x900 (GPU; a 16x16 image padded to 388x388 on CPU).

    python examples/dilation8.py [--bf16] [--channels-last]
"""
from _common import main

from pydense import models

if __name__ == "__main__":
    main("Dilation8", models.dilation8, (1, 3, 900, 900), (1, 3, 388, 388))
