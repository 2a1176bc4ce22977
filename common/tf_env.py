"""Environment defaults that must be in place before TensorFlow is first imported.

Every package of the project imports this module first (see the packages' __init__.py), so scripts, tests,
the notebook and library users all get them; a value already set in the environment wins.

- TF_ENABLE_ONEDNN_OPTS=1: TensorFlow turns oneDNN on by default only on CPUs with AVX512-VNNI, BF16 or AMX.
  Elsewhere (AVX2 CPUs such as the 2-core reference machine) it falls back to Eigen kernels whose
  convolution back-propagation is 3-4x slower: a training step of ssd_300_vgg_lite at batch 8 took 2.1 s
  with Eigen and 0.6 s with oneDNN there. Set TF_ENABLE_ONEDNN_OPTS=0 to compare.
- TF_CPP_MIN_LOG_LEVEL=2: TensorFlow's C++ info and warning lines hide the scripts' own output.
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
