"""``reglab reproduce``: the source texts' checkable claims as named experiments.

``claims`` (the claims as data), ``verdict`` (statistic and criterion), ``runner`` (arms × seeds
through an executor), ``report`` (Markdown and PNG plots).
"""
