"""Environment defaults that must be in place before TensorFlow is first imported.

Every package of the project imports this module first (see the packages' __init__.py), so scripts, tests,
the notebook and library users all get them; a value already set in the environment wins.

- TF_ENABLE_ONEDNN_OPTS=1: TensorFlow turns oneDNN on by default only on CPUs with AVX512-VNNI, BF16 or AMX.
  Elsewhere (AVX2 CPUs such as the 2-core reference machine) it falls back to Eigen kernels whose
  convolution back-propagation is 3-4x slower: a training step of ssd_300_vgg_lite at batch 8 took 2.1 s
  with Eigen and 0.6 s with oneDNN there. Set TF_ENABLE_ONEDNN_OPTS=0 to compare.
- TF_CPP_MIN_LOG_LEVEL=2: TensorFlow's C++ info and warning lines hide the scripts' own output.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it loads. A program that imports TensorFlow before the
project (`import tensorflow as tf` above `from inference.detector import Detector`) therefore keeps
TensorFlow's own default; where that leaves oneDNN off, a RuntimeWarning says so and how to fix it (an
explicit TF_ENABLE_ONEDNN_OPTS, 0 or 1, is the user's choice and gets no warning).
"""
import os
import sys
import warnings

_LOADED_FIRST = "tensorflow" in sys.modules and "TF_ENABLE_ONEDNN_OPTS" not in os.environ

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _warn_if_onednn_stayed_off():
    from common.precision import onednn_enabled  # TensorFlow is loaded already: importing it costs nothing
    if not onednn_enabled():
        warnings.warn("TensorFlow was imported before this project, so its oneDNN kernels stay off on this CPU "
                      "(TF_ENABLE_ONEDNN_OPTS is read when TensorFlow loads): convolutions run on the slower "
                      "Eigen kernels, training about 3x slower. Import the project's packages before TensorFlow, "
                      "or set TF_ENABLE_ONEDNN_OPTS=1 in the environment.", RuntimeWarning,
                      stacklevel=_importer_level())


def _importer_level():
    """warnings.warn's stacklevel (from _warn_if_onednn_stayed_off) of the line that imported the project: the
    first frame that is neither the import machinery (which warnings.warn does not count) nor one of the
    project's package __init__ files."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(2), 2
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith("<frozen"):
            if not (name.startswith(root + os.sep) and os.path.basename(name) in ("__init__.py", "tf_env.py")):
                return level
            level += 1
        frame = frame.f_back
    return 1


if _LOADED_FIRST:
    _warn_if_onednn_stayed_off()
