"""Euclidean projections of pytrees onto convex sets, with Optax's names (``optax.projections``).

Use them for projected gradient descent: ``params = projection(apply_updates(params, updates))``.

``TOP_LEVEL_NAMES`` is empty: Optax exports none of its projections at its top level.
"""

from optcompose.projections._projections import projection_box as projection_box
from optcompose.projections._projections import projection_halfspace as projection_halfspace
from optcompose.projections._projections import projection_hypercube as projection_hypercube
from optcompose.projections._projections import projection_hyperplane as projection_hyperplane
from optcompose.projections._projections import projection_l1_ball as projection_l1_ball
from optcompose.projections._projections import projection_l1_sphere as projection_l1_sphere
from optcompose.projections._projections import projection_l2_ball as projection_l2_ball
from optcompose.projections._projections import projection_l2_sphere as projection_l2_sphere
from optcompose.projections._projections import projection_linf_ball as projection_linf_ball
from optcompose.projections._projections import projection_non_negative as projection_non_negative
from optcompose.projections._projections import projection_simplex as projection_simplex
from optcompose.projections._projections import projection_vector as projection_vector

TOP_LEVEL_NAMES: tuple[str, ...] = ()
