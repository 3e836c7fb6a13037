"""The stages of the main job, one module each, in the order :func:`bertcompress.pipeline.run` calls them:
teacher, ensemble, student (general_kd, transfer), compress, evaluate (floor, eval_sets). The fit and test
loops they share are in :mod:`bertcompress.training`; job bookkeeping (skip, failure, the sweeper's
figure) in :mod:`bertcompress.jobs`."""
