"""SSD training as a library (train_ssd_network.py is its command line).

optimizers.py        learning-rate schedules and optimisers from explicit arguments (TF-Slim's flags)
checkpoint_init.py   warm starts: SSD or TF-Slim vgg_16 checkpoints, scopes, fc6/fc7 decimation, mismatch report
checkpoints.py       atomic, verified, rotated checkpoints of a run, and restoring the newest readable one
distribution.py      tf.distribute strategies for the v1 graph (one machine's devices, or TF_CONFIG workers)
summaries.py         TensorBoard summaries and the progress line
trainer.py           the distributed training step and the loop (resume, NaN guard, signals)
"""
import common.tf_env  # noqa: F401  (sets TensorFlow environment defaults before TensorFlow loads)
