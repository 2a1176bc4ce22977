"""What runs a trained network rather than defining it: the Detector and its session, graph optimisation
(freezing, batch norm folding, Winograd, XLA), video and camera streams, exports (ONNX, TFLite, SavedModel)
and their runtimes."""
from common import tf_env  # noqa: F401  (TensorFlow environment defaults, before TensorFlow loads)
