"""Fixtures of the model tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run the tiny networks on one thread.

    Their layers are too small to gain from a second thread, and on a
    shared 2-core machine two OpenMP threads competing with other jobs made
    a call 50x slower than one thread (0.8 s against 15 ms).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
