"""neural_echos.threads.single_thread: one thread inside, the caller's settings restored after."""

import pytest
import torch
from threadpoolctl import threadpool_info

from neural_echos.threads import single_thread


@pytest.mark.parametrize("torch_only", [False, True])
def test_one_thread_inside_and_restored_after_an_error(torch_only):
    original = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="inside"), single_thread(torch_only=torch_only):
            assert torch.get_num_threads() == 1
            limited = [pool["num_threads"] for pool in threadpool_info()]
            if not torch_only:  # OpenMP/BLAS pools (numpy's, scikit-learn's) on one thread too
                assert all(n == 1 for n in limited)
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original)
