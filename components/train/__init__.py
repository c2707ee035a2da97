"""The train step: `component.py` validates the candidate once, `run.py` dispatches to the
framework's trainer (`keras/`, `transformers/`), which share `recipe.py` (schedule, optimizer
defaults).

May import: `components.spec`, `components.common`, `components.models`.
"""
