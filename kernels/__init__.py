"""Triton kernels of pydense, one module per op family (installed as ``pydense.kernels``).

Each module holds the ``@triton.jit`` kernels, the launchers that take tensors, and ``CONFIGS``:
every compile-time configuration the launchers use, so tests can AOT-compile each one for sm_80
and sm_90 (see ``tests/test_aot.py``).
"""
