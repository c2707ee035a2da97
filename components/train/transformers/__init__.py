"""The transformers trainer: a plain PyTorch loop over a Hugging Face checkpoint, with DDP.

May import: `components.spec`, `components.common`, `components.models` and the shared
`components.train.recipe`. TensorFlow is never imported here (it is slow to start in every DDP
process).
"""
