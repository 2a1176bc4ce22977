"""The SSD box ideas, used by every other package and importing none of them: anchors, box coding and IoU,
matching, the loss and post-processing (torchvision's detection `_utils.py` and `ops/` are the model)."""
from common import tf_env  # noqa: F401  (TensorFlow environment defaults, before TensorFlow loads)
