"""The Keras trainer: tf.distribute strategy, transfer then fine-tune phases, resumable.

May import: `components.spec`, `components.common`, `components.models` and the shared
`components.train.recipe`.
"""
