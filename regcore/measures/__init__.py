"""Optional per-epoch measurements (the spec's ``measure`` list) that explain regularization.

Each measurement is one small module with a pure function; ``registry.py`` maps names to them and
``Measures`` runs the chosen ones at the end of every epoch. Measuring must not change training:
each runs in eval mode under ``torch.random.fork_rng``, takes gradients with
``torch.autograd.grad`` (so no ``.grad`` is left behind) and never updates a parameter. Their
total cost is added to the run's ``timings["measure_s"]``.
"""

from regcore.measures.registry import MEASURES, Measures

__all__ = ["MEASURES", "Measures"]
