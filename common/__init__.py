from common import tf_env  # noqa: F401  (TensorFlow environment defaults, before TensorFlow loads)
