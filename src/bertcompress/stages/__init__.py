"""The stages of the main job, one module each, in the order :func:`bertcompress.pipeline.run` calls them:
teacher, ensemble, student (general_kd), transfer, compress, evaluate (floor, eval_sets); ``fit`` holds the
fit and test loops they share, ``results`` what a job writes when it is skipped or fails."""
