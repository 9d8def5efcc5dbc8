"""Full optimizers: each a ``chain`` of transforms, with Optax's names, arguments and defaults."""

from optcompose.optimizers._classic import adagrad as adagrad
from optcompose.optimizers._classic import adam as adam
from optcompose.optimizers._classic import adamw as adamw
from optcompose.optimizers._classic import lamb as lamb
from optcompose.optimizers._classic import lars as lars
from optcompose.optimizers._classic import rmsprop as rmsprop
from optcompose.optimizers._classic import sgd as sgd
