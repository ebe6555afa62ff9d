"""Training of the neural kinds, separate from the models (pure modules) and estimators.

- :mod:`~histexpr.training.config`: :class:`TrainConfig`, the training layer's settings;
- :mod:`~histexpr.training.members`: which networks train on which rows ("members");
- :mod:`~histexpr.training.plan`: the LightningModule, loaders and the history log;
- :mod:`~histexpr.training.fit`: one Lightning fit of a member, and all members in turn;
- :mod:`~histexpr.training.runners`: members in parallel on Dask workers;
- :mod:`~histexpr.training.ddp`: data-parallel support; :mod:`~histexpr.training.checkpoints`:
  crash-safe checkpoints.
"""
