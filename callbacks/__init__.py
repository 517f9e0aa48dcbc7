"""Lightning callbacks, one job each.

* :class:`callbacks.depthwise_init.DepthwiseInit`: an init method of :mod:`neural_echos.init`
  (DoG, Kaiming, ...) applied to the depthwise convolutions at the start of a fresh ``fit``.
* :class:`callbacks.kernel_snapshot.KernelSnapshot`: on/off/other proportions and kernel grids
  in TensorBoard at step 0 and every N epochs.
* :class:`callbacks.kernel_tracking.KernelTracking`: per-kernel class transitions, drift from
  init and a population signal with its null (docs/tracking.md).
* :class:`callbacks.kernel_projector.KernelProjector`: the kernels in TensorBoard's Projector.
* :class:`callbacks.scalars_layout.ScalarsLayout`: the custom-scalars page of TensorBoard.
* :class:`callbacks.hparams_session.HParamsSession`: the run's settings and metrics in TensorBoard's HParams tab.
* :class:`callbacks.learning_rate.LearningRateLogger`: the learning rate as one curve.
* :class:`callbacks.finite_loss.FiniteLossGuard`: stop at the first NaN/inf loss, before the update.
* :class:`callbacks.rng_state.RNGStateCheckpoint`: RNG states in checkpoints, for exact resumes.
* :class:`callbacks.run_summary.RunSummary`: the closing lines of fit/validate/test: where the run
  went, best and last val/acc1, kernel shares beside chance, the commands to run next.
"""

from callbacks.depthwise_init import DepthwiseInit
from callbacks.finite_loss import FiniteLossGuard, NonFiniteLossError
from callbacks.hparams_session import HParamsSession
from callbacks.kernel_projector import KernelProjector
from callbacks.kernel_snapshot import KernelSnapshot
from callbacks.kernel_tracking import KernelTracking
from callbacks.learning_rate import LearningRateLogger
from callbacks.rng_state import RNGStateCheckpoint
from callbacks.run_summary import RunSummary
from callbacks.scalars_layout import ScalarsLayout

__all__ = [
    "DepthwiseInit",
    "FiniteLossGuard",
    "HParamsSession",
    "KernelProjector",
    "KernelSnapshot",
    "KernelTracking",
    "LearningRateLogger",
    "NonFiniteLossError",
    "RNGStateCheckpoint",
    "RunSummary",
    "ScalarsLayout",
]
