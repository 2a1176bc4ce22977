"""Session configuration for inference: threads, precision (float32, bfloat16 on CPUs, float16 on GPUs) and
XLA, and the CPU feature probes that decide what a precision costs on this machine."""
import os

import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from common.errors import ConfigError

PRECISIONS = ("float32", "bf16", "float16")


def session_config(intra_op_threads=None, inter_op_threads=None, precision="float32", xla=False):
    """A ConfigProto for inference.

    precision: "float32"; "bf16": grappler's oneDNN auto-mixed-precision rewrite (convolutions and matmuls in
    bfloat16 on CPUs with AVX512_BF16 / AMX; TensorFlow falls back to slow Eigen kernels elsewhere, see
    cpu_supports_bf16); "float16": grappler's auto-mixed-precision rewrite (float16 on GPUs with tensor cores).
    Softmax, decoding and NMS stay float32 (detection_outputs casts back). xla: global JIT (XLA) level ON_1.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    config = tf.compat.v1.ConfigProto()
    if intra_op_threads:
        config.intra_op_parallelism_threads = int(intra_op_threads)
    if inter_op_threads:
        config.inter_op_parallelism_threads = int(inter_op_threads)
    rewrites = config.graph_options.rewrite_options
    if precision == "bf16":
        if not onednn_enabled():
            raise ConfigError("precision='bf16'", "needs TensorFlow's oneDNN optimisations: set "
                              "TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported")
        rewrites.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    elif precision == "float16":
        rewrites.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
    if xla:
        config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.ON_1
    return config


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN kernels and rewrites (TF_ENABLE_ONEDNN_OPTS, read at import; off by
    default in CUDA builds such as the pip wheel). Grappler's bfloat16 rewrite does nothing without them."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").lower() in ("1", "true")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU feature flags of the first processor in /proc/cpuinfo (an empty set where there is none)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_supports_bf16(flags=None):
    """True when the CPU computes bfloat16 natively (AVX512_BF16 or AMX-BF16), which oneDNN needs for speed."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def device_description():
    """What the benchmarks run on, for their figures: "<n> x GPU: <name>" where TensorFlow sees GPUs, else
    "CPU: <model name>, <n> cores"."""
    import platform
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        return f"{len(gpus)} x GPU: {names[0]}"
    name = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"CPU: {name}, {os.cpu_count()} cores"
