"""Session configuration for inference: threads, precision (float32, bfloat16 on CPUs, float16 on GPUs) and
XLA, and the CPU feature probes that decide what a precision costs on this machine."""
import os

import tensorflow as tf

# The precisions and CPU probes live in common/precision.py (training uses them too); re-exported here.
from common.precision import PRECISIONS, apply_precision, cpu_flags, cpu_supports_bf16, onednn_enabled  # noqa: F401


def session_config(intra_op_threads=None, inter_op_threads=None, precision="float32", xla=False):
    """A ConfigProto for inference.

    precision: "float32", "bf16" (CPUs with AVX512_BF16 / AMX) or "float16" (GPUs): common/precision.py.
    Softmax, decoding and NMS stay float32 (detection_outputs casts back). xla: global JIT (XLA) level ON_1.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    config = tf.compat.v1.ConfigProto()
    if intra_op_threads:
        config.intra_op_parallelism_threads = int(intra_op_threads)
    if inter_op_threads:
        config.inter_op_parallelism_threads = int(inter_op_threads)
    apply_precision(config, precision, name="precision")
    if xla:
        config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.ON_1
    return config


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
