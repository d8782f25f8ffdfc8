"""pytest hooks and fixtures. The shared test helpers live in helpers.py, imported first here: it
sets TRITON_INTERPRET=1 on a machine without a GPU before triton is first imported."""
import os

import helpers  # noqa: F401  (first: the interpreter flag)
import pytest
import torch

import pydense
from helpers import HAS_CUDA


def pytest_report_header(config):
    info = pydense.build_info()
    return [f"pydense: extension={'built' if pydense.extension_available() else 'missing'} "
            f"cuda_kernels={info.get('cuda')} archs={info.get('cuda_archs')} "
            f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')} cuda_available={HAS_CUDA}"]


@pytest.fixture(autouse=True)
def _exact_fp32():
    """fp32 convolutions and dots run in exact fp32 in the tests (pydense, like cuDNN, uses TF32
    when torch.backends.cudnn.allow_tf32 is set, which is torch's default): the oracle
    tolerances are fp32's. Tests of the TF32 path set it themselves."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved
