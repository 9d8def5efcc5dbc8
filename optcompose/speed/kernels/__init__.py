"""One-pass optimizer steps for XLA:CPU (C++ through the XLA FFI), used by ``optcompose.step``.

``build`` compiles ``optimizer_steps.cc`` at first use and registers its handlers with JAX;
``calls`` wraps them as ``jax.ffi.ffi_call``s over all leaves of a pytree at once.
"""

from optcompose.speed.kernels._build import KernelsUnavailableError, available, ensure_registered, unavailable_reason

__all__ = ["KernelsUnavailableError", "available", "ensure_registered", "unavailable_reason"]
