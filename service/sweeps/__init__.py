"""Sweeps, replicates, ablations and comparisons: pure, web-free logic (no database, no torch).

- ``space``: search spaces over spec paths and the grid / random / factorial points;
- ``plan``: a sweep request expanded into validated experiment specs (errors name the field);
- ``stats``: mean and 95% confidence interval over seeds, the best configuration, factorial
  main effects and two-way interactions;
- ``early_stop``: the median stopping rule and ASHA, as decisions over metric curves;
- ``packing``: which launched trials go to a worker as one pack (``REGLAB_PACK_SIZE``);
- ``filters``: the ``filter=`` / ``sort=`` grammar of ``GET /v1/experiments``.
"""
