"""What the Bayesian regularizers share (Prince §9.3.5): the Gaussian prior and its L2 strength,
and the metrics of a posterior-predictive distribution. The regularizers themselves are
``regcore/regularizers/sgld.py``, ``bayes_by_backprop.py`` and ``laplace.py``."""
