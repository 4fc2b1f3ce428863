"""Thread control of the pure core: how many OpenMP/BLAS threads ranking and served batches may use.

Both limits share one cached ``threadpoolctl`` controller (building one costs milliseconds; using it ~0.05 ms).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

#: OpenMP threads of the ranker: one, because scikit-learn's OpenMP loops slow down by an order of magnitude when
#: the cores are shared (web workers, Celery), and a served batch is small anyway.
RANKER_THREADS = 1

#: Batches up to this many users are scored with one BLAS/OpenMP thread: a served request multiplies one user vector
#: by the item factors, which OpenBLAS splits over threads; on shared cores waking them costs ~10 ms, the work ~0.1.
#: One thread gives bit-identical results. Larger (training, evaluation, precompute) batches keep every thread.
SERVING_BATCH_THREADS_MAX_USERS = 64

_CONTROLLER = None


def _controller():
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def ranker_threads() -> AbstractContextManager:
    """Context manager limiting OpenMP to :data:`RANKER_THREADS`."""
    return _controller().limit(limits=RANKER_THREADS, user_api="openmp")


def serving_threads(n_users: int) -> AbstractContextManager:
    """One BLAS and OpenMP thread for small batches (see :data:`SERVING_BATCH_THREADS_MAX_USERS`)."""
    if n_users > SERVING_BATCH_THREADS_MAX_USERS:
        return nullcontext()
    return _controller().limit(limits=1)
