r"""Connectionist temporal classification (CTC) loss, with its forward (alpha) variables.

Graves et al., *Connectionist temporal classification: labelling unsegmented sequence data with
recurrent neural networks*, ICML 2006.

The forward pass tracks, per frame ``t`` and label position, two log-probabilities:

* ``blank[n]``, ``n = 0..N``: the first ``n`` labels have been emitted and the alignment may now
  emit a blank (or, if ``y_{n+1}`` differs from ``y_n``, go straight on to ``y_{n+1}``);
* ``label[n]``, ``n = 1..N``: the alignment is on label ``y_n`` (just emitted or repeated).

Per frame, with ``e_n`` the log-probability of ``y_n`` and ``b`` that of the blank:

.. math::
    r_n &= \mathrm{blank}_n \oplus (\mathrm{label}_n + \epsilon [y_n = y_{n+1}]) \\
    \mathrm{label}'_n &= (r_{n-1} \oplus \mathrm{label}_n) + e_n \\
    \mathrm{blank}'_n &= (r_n + b) \oplus (\mathrm{label}_n + b + \epsilon [y_n \ne y_{n+1}])

where :math:`\oplus` is ``logaddexp`` and :math:`\epsilon` is ``log_epsilon``, a finite stand-in for
``log 0`` that switches a transition off. After the last frame ``blank_n`` absorbs ``label_n``, and
the loss is ``-blank[L]`` with ``L`` the unpadded label length: minus the log of the total probability
of all alignments of the labels.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optcompose.losses import _checks

ArrayLike = Any


def ctc_loss_with_forward_probs(
    logits: ArrayLike,
    logit_paddings: ArrayLike,
    labels: ArrayLike,
    label_paddings: ArrayLike,
    *,
    blank_id: int = 0,
    log_epsilon: ArrayLike = -1e5,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""CTC loss of every sequence, and the log forward variables of the blank and label states.

    :math:`-\log p(y \mid x) = -\log \sum_{\pi \in \mathcal{B}^{-1}(y)} \prod_t p_t(\pi_t)`, summed
    over all alignments ``pi`` that collapse to ``y`` once repeats are merged and blanks removed
    (Graves et al. 2006), by the forward recursion described in this module's docstring.

    Args:
      logits: ``[B, T, K]`` unnormalized log-probabilities over ``K`` classes (blank included).
      logit_paddings: ``[B, T]``, 1.0 marks a padded frame (skipped: the state carries over), 0.0 a
        real one.
      labels: ``[B, N]`` class indices of the target sequences (never ``blank_id`` in the unpadded
        part). An index outside ``[0, K)`` is given probability 1 (log 0), as a one-hot of it would.
      label_paddings: ``[B, N]``, 1.0 for padding; padding must come after the labels (right-padded).
      blank_id: the class index of the blank.
      log_epsilon: finite value used for ``log 0``.

    Returns:
      ``(loss, log_alpha_blank, log_alpha_label)``: ``loss`` of shape ``[B]``, and the forward
      variables after every frame, ``[T, B, N + 1]`` (blank states) and ``[T, B, N]`` (label states).
      An impossible alignment (too few frames) gives a loss of about ``-log_epsilon``.

    Raises:
      ValueError: wrong ranks, mismatching shapes or batch sizes, or ``blank_id`` outside ``[0, K)``.
      TypeError: ``blank_id`` is not an int.
    """
    _checks.rank("logits", logits, 3)
    _checks.rank("labels", labels, 2)
    _checks.same_shape("labels", labels, "label_paddings", label_paddings)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    batch, _, num_classes = logits.shape
    if _checks.shape_of(logit_paddings) != logits.shape[:2]:
        raise ValueError(
            f"logit_paddings must have shape [B, T] = {logits.shape[:2]}, got {_checks.shape_of(logit_paddings)}"
        )
    if labels.shape[0] != batch:
        raise ValueError(f"labels must have batch size {batch} (that of logits), got {labels.shape[0]}")
    if isinstance(blank_id, bool) or not isinstance(blank_id, (int, np.integer)):
        raise TypeError(f"blank_id must be an int, got {blank_id!r} of type {type(blank_id).__name__}")
    if not 0 <= blank_id < num_classes:
        raise ValueError(f"blank_id must lie in [0, {num_classes}) (the class axis of logits), got {blank_id}")
    num_labels = labels.shape[1]

    state_dtype = jnp.promote_types(jnp.result_type(float), logits.dtype)
    log_probs = jax.nn.log_softmax(logits, axis=-1).astype(state_dtype)

    # Log-probability of each target label at each frame, [B, T, N]; gathered (exact on every backend).
    index = labels.astype(jnp.int32)
    valid = (index >= 0) & (index < num_classes)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        valid = valid & (index == labels)
    gather_index = jnp.broadcast_to(
        jnp.clip(index, 0, num_classes - 1)[:, None, :], (batch, logits.shape[1], num_labels)
    )
    label_log_probs = jnp.where(valid[:, None, :], jnp.take_along_axis(log_probs, gather_index, axis=2), 0.0)
    blank_log_probs = log_probs[:, :, blank_id, None]  # [B, T, 1]

    # repeats[b, n]: label n equals label n + 1, so the direct label -> next label move is forbidden.
    repeats = jnp.pad((labels[:, :-1] == labels[:, 1:]).astype(jnp.float32), ((0, 0), (0, 1)))
    skip_penalty = log_epsilon * repeats
    stay_penalty = log_epsilon * (1.0 - repeats)

    def absorb(blank_states, label_states):
        # blank[n] (+)= label[n] for n = 1..N
        return jnp.concatenate([blank_states[:, :1], jnp.logaddexp(blank_states[:, 1:], label_states)], axis=1)

    def frame(carry, inputs):
        blank_states, label_states = carry
        label_lp, blank_lp, padded = inputs
        ready = absorb(blank_states, label_states + skip_penalty)
        new_label = jnp.logaddexp(ready[:, :-1] + label_lp, label_states + label_lp)
        new_blank = absorb(ready + blank_lp, label_states + blank_lp + stay_penalty)
        padded = padded[:, None] != 0
        new_blank = jnp.where(padded, blank_states, new_blank)
        new_label = jnp.where(padded, label_states, new_label)
        return (new_blank, new_label), (new_blank, new_label)

    init_blank = jnp.full((batch, num_labels + 1), log_epsilon, state_dtype).at[:, 0].set(0.0)
    init_label = jnp.full((batch, num_labels), log_epsilon, state_dtype)
    time_major = (
        jnp.swapaxes(label_log_probs, 0, 1),
        jnp.swapaxes(blank_log_probs, 0, 1),
        jnp.swapaxes(jnp.asarray(logit_paddings), 0, 1),
    )
    (last_blank, last_label), (log_alpha_blank, log_alpha_label) = jax.lax.scan(
        frame, (init_blank, init_label), time_major
    )
    final_blank = absorb(last_blank, last_label)
    log_alpha_blank = log_alpha_blank.at[-1].set(final_blank)

    label_lengths = num_labels - jnp.sum(jnp.asarray(label_paddings), axis=1).astype(jnp.int32)
    loss = -jnp.take_along_axis(final_blank, label_lengths[:, None], axis=1, mode="clip")[:, 0]
    return loss, log_alpha_blank, log_alpha_label


def ctc_loss(
    logits: ArrayLike,
    logit_paddings: ArrayLike,
    labels: ArrayLike,
    label_paddings: ArrayLike,
    *,
    blank_id: int = 0,
    log_epsilon: ArrayLike = -1e5,
) -> jax.Array:
    r"""CTC loss of every sequence in a batch: :math:`-\log p(\text{labels} \mid \text{logits})`.

    See :func:`ctc_loss_with_forward_probs` for the arguments; this returns only the ``[B]`` losses.
    Same as ``torch.nn.functional.ctc_loss(log_softmax(logits).transpose(0, 1), labels,
    input_lengths=T - logit_paddings.sum(1), target_lengths=N - label_paddings.sum(1), blank=blank_id,
    reduction="none")`` for feasible alignments.

    Args:
      logits: ``[B, T, K]`` unnormalized log-probabilities.
      logit_paddings: ``[B, T]`` padding indicators (1.0 = padded frame).
      labels: ``[B, N]`` target class indices.
      label_paddings: ``[B, N]`` padding indicators (1.0 = padded), right-padded.
      blank_id: class index of the blank.
      log_epsilon: finite value used for ``log 0``.

    Returns:
      ``[B]`` losses.
    """
    loss, _, _ = ctc_loss_with_forward_probs(
        logits, logit_paddings, labels, label_paddings, blank_id=blank_id, log_epsilon=log_epsilon
    )
    return loss
