import common.tf_env  # noqa: F401  (sets TensorFlow environment defaults before TensorFlow loads)
