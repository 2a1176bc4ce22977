"""Reduced precision by grappler's graph rewrites, for training and inference alike, and the CPU probes that
say what it costs on this machine.

- "bf16": grappler's oneDNN auto-mixed-precision rewrite. Convolutions, matmuls and their gradients run in
  bfloat16, variables, optimiser updates, losses and the detection tail stay float32 (the rewrite's lists).
  Fast on CPUs with AVX512_BF16 or AMX (cpu_supports_bf16): on 2 AMD EPYC Zen 4 cores a training step of
  ssd_300_resnet_v1_50 at batch 8 took 1.5-1.6 s against 2.5 s in float32 (docs/benchmarks.md). Elsewhere
  TensorFlow falls back to slow kernels. bfloat16 keeps float32's exponent, so training needs no loss scaling.
- "float16": grappler's auto-mixed-precision rewrite (GPUs with tensor cores); inference only here, since
  float16 training needs loss scaling.
"""
import os

from tensorflow.core.protobuf import rewriter_config_pb2

from common.errors import ConfigError

PRECISIONS = ("float32", "bf16", "float16")


def apply_precision(config, precision, name="precision"):
    """Turns on the rewrite of `precision` in the ConfigProto `config` (in place); returns config.
    name: what an error calls the setting (a flag name in scripts)."""
    if precision not in PRECISIONS:
        raise ConfigError(name, f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    rewrites = config.graph_options.rewrite_options
    if precision == "bf16":
        if not onednn_enabled():
            raise ConfigError(f"{name}=bf16", "needs TensorFlow's oneDNN optimisations: set "
                              "TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported")
        rewrites.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    elif precision == "float16":
        rewrites.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
    return config


def precision_of(config):
    """The reduced precision whose rewrite `config` turns on ("bf16", "float16"), else "float32"."""
    rewrites = config.graph_options.rewrite_options
    if rewrites.auto_mixed_precision_onednn_bfloat16 == rewriter_config_pb2.RewriterConfig.ON:
        return "bf16"
    if rewrites.auto_mixed_precision == rewriter_config_pb2.RewriterConfig.ON:
        return "float16"
    return "float32"


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
