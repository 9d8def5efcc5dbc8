"""The shared input checks of the losses (``optcompose/losses/_checks.py``): messages name the argument."""

from __future__ import annotations

import numpy as np
import pytest

from optcompose.losses import _checks


def test_dtype_checks():
    _checks.floating("x", np.float32(1.0))
    _checks.floating("x", 1.0)
    _checks.integer("y", np.arange(3))
    with pytest.raises(TypeError, match="x must have a floating dtype.*int32"):
        _checks.floating("x", np.arange(3, dtype=np.int32))
    with pytest.raises(TypeError, match="y must have an integer dtype"):
        _checks.integer("y", np.ones(3))
    with pytest.raises(TypeError, match="x must be an array or a number"):
        _checks.floating("x", "text")


def test_shape_checks():
    assert _checks.broadcastable("a", np.ones((2, 1)), "b", np.ones(3)) == (2, 3)
    with pytest.raises(ValueError, match=r"a and b must have broadcast-compatible shapes, got \(2,\) and \(3,\)"):
        _checks.broadcastable("a", np.ones(2), "b", np.ones(3))
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        _checks.same_shape("a", np.ones((2, 1)), "b", np.ones(2))
    with pytest.raises(ValueError, match="x must have rank 3"):
        _checks.rank("x", [[1.0]], 3)
    with pytest.raises(ValueError, match="at least 1"):
        _checks.at_least_rank("x", 1.0, 1)


def test_axis_checks():
    assert _checks.normalize_axis("axis", -1, 3) == 2
    assert _checks.normalize_axes("axis", (0, -1), 3) == (0, 2)
    with pytest.raises(ValueError, match="axis=3 is out of bounds"):
        _checks.normalize_axis("axis", 3, 3)
    with pytest.raises(TypeError, match="axis must be an int"):
        _checks.normalize_axis("axis", 1.0, 3)
    with pytest.raises(ValueError, match="repeats"):
        _checks.normalize_axes("axis", (1, -2), 3)
