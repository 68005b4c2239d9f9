"""jaxchan: generative wireless channel estimation and channel-aware precoding in JAX.

Modules, one concept each:

* :mod:`jaxchan.conventions` - complex-channel shapes, noise and normalization.
* :mod:`jaxchan.schedules` - DDPM cosine schedule; non-identical gamma(tau), eq. (10).
* :mod:`jaxchan.noniden` - non-identical forward process, eq. (9) / eta DDIM steps, the element-wise
  DPM-Solver++(2M), the eq. (15)-(16) start and the Algorithm 2 generation loop.
* :mod:`jaxchan.stepping` - uniform, water-filling and hybrid (eq. 13) time stepping.
* :mod:`jaxchan.ddpm` - standard epsilon-prediction diffusion with guidance.
* :mod:`jaxchan.ddpm_solvers` - few-step samplers for it: DDIM, DPM-Solver++(2M), respaced ancestral.
* :mod:`jaxchan.distill` - progressive distillation of the conditional DM.
* :mod:`jaxchan.oracle` - exact Bayes estimators under a complex Gaussian mixture.
* :mod:`jaxchan.metrics` - NMSE, GCS, SGCS.
* :mod:`jaxchan.precoding` - SVD and Bayesian precoders (eigh or subspace iteration), spectral efficiency.
* :mod:`jaxchan.export` - a trained model's estimates to HDF5 / MATLAB; :mod:`jaxchan.summary` - TensorBoard scalars.
"""

from jaxchan import conventions, ddpm, ddpm_solvers, metrics, noniden, oracle, precoding, schedules, stepping

__all__ = ["conventions", "ddpm", "ddpm_solvers", "metrics", "noniden", "oracle", "precoding", "schedules",
           "stepping"]
__version__ = "0.1.0"
