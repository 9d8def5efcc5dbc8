"""Integrations with other libraries, each imported only when used: Flax (``optcompose.integrations.flax``)
and orbax checkpoints (``optcompose.integrations.checkpoint``, also reachable as ``optcompose.checkpoint``)."""
