"""Restoring never silently overrides the code's configuration, nor loads damaged or foreign data."""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optcompose as oc
from optcompose import checkpoint

pytest.importorskip("orbax.checkpoint")

PARAMS = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones((4,))}
GRADS = jax.tree.map(jnp.ones_like, PARAMS)


def _run(tx, state, params, steps=2):
    for _ in range(steps):
        updates, state = tx.update(GRADS, state, params)
        params = oc.apply_updates(params, updates)
    return params, state


def test_a_changed_learning_rate_is_an_error_until_the_caller_chooses(tmp_path):
    saved_tx, code_tx = oc.sgd(1.0, momentum=0.5), oc.sgd(0.01, momentum=0.5)
    _, state = _run(saved_tx, saved_tx.init(PARAMS), PARAMS)
    checkpoint.save(tmp_path / "ck", state)
    with pytest.raises(checkpoint.HyperparamsMismatchError) as info:
        checkpoint.restore(tmp_path / "ck", code_tx.init(PARAMS))
    message = str(info.value)
    assert "[1].hyperparams['learning_rate']" in message and "saved 1.0" in message and "code 0.01" in message
    restored = checkpoint.restore(tmp_path / "ck", code_tx.init(PARAMS), hyperparams="code")
    new_params, _ = _run(code_tx, restored, PARAMS, steps=1)
    # momentum buffer after two steps of g=1: 1 + 0.5 = 1.5, then 1 + 0.5 * 1.5 = 1.75; lr 0.01
    np.testing.assert_allclose(np.asarray(new_params["b"]), 1.0 - 0.01 * 1.75, rtol=1e-6)
    kept = checkpoint.restore(tmp_path / "ck", code_tx.init(PARAMS), hyperparams="saved")
    assert float(oc.get_hyperparams(kept)["learning_rate"]) == 1.0


def test_equal_hyperparameters_restore_without_a_word(tmp_path):
    tx = oc.adamw(1e-3, weight_decay=0.1)
    _, state = _run(tx, tx.init(PARAMS), PARAMS)
    checkpoint.save(tmp_path / "ck", state)
    restored = checkpoint.restore(tmp_path / "ck", tx.init(PARAMS))
    assert int(restored[0].count) == 2
    with pytest.raises(ValueError, match="hyperparams must be"):
        checkpoint.restore(tmp_path / "ck", tx.init(PARAMS), hyperparams="mine")


def _largest_file(root: pathlib.Path) -> pathlib.Path:
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "optcompose.json"]
    return max(files, key=lambda p: p.stat().st_size)


def test_flipped_bytes_are_detected_naming_the_array(tmp_path):
    big = {"w": jnp.asarray(np.random.default_rng(0).standard_normal(4096), jnp.float32)}
    checkpoint.save(tmp_path / "ck", big)
    target = _largest_file(tmp_path / "ck")
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    target.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointCorruptedError, match=r"\['w'\]"):
        checkpoint.restore(tmp_path / "ck", big)


def test_verification_can_be_skipped_and_is_required_by_default(tmp_path):
    checkpoint.save(tmp_path / "ck", PARAMS)
    os.remove(tmp_path / "ck" / "optcompose.json")
    with pytest.raises(checkpoint.CheckpointCorruptedError, match="verify=False"):
        checkpoint.restore(tmp_path / "ck", PARAMS)
    restored = checkpoint.restore(tmp_path / "ck", PARAMS, verify=False)
    np.testing.assert_array_equal(np.asarray(restored["a"]), np.asarray(PARAMS["a"]))


def test_a_flat_state_of_another_layout_is_refused_naming_the_leaf(tmp_path):
    tx = oc.flat_state(oc.adam(0.1))
    other = {"a": jnp.ones((4,)), "b": jnp.ones((2, 3))}  # same total size, leaves swapped
    checkpoint.save(tmp_path / "ck", tx.init(other))
    with pytest.raises(ValueError, match=r"another layout.*\['a'\] of shape \(2, 3\)"):
        checkpoint.restore(tmp_path / "ck", tx.init(PARAMS))
    restored = checkpoint.restore(tmp_path / "ck", tx.init(other))
    assert restored[0].mu.shapes == ((4,), (2, 3))


@pytest.mark.parametrize("kind", ["missing", "empty", "killed"])
def test_no_checkpoint_is_a_file_not_found_error_naming_the_path(tmp_path, kind):
    where = tmp_path / "ck"
    if kind == "empty":
        where.mkdir()
    if kind == "killed":  # what an interrupted save leaves: a directory without orbax's metadata
        where.mkdir()
        (where / "optcompose.json").write_text('{"digests": {}, "layouts": {}}')
    with pytest.raises(FileNotFoundError, match=str(where)):
        checkpoint.restore(where, PARAMS)
