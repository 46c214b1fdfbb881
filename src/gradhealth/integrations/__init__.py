"""Integrations with training frameworks. Each is an optional extra, imported only by users who ask for it:
gradhealth's core never imports a framework.

- :mod:`gradhealth.integrations.lightning`: :class:`~gradhealth.integrations.lightning.GradhealthCallback`
  (the ``lightning`` extra).
"""
