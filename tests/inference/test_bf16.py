"""Reduced precision: --precision=bf16 (oneDNN bfloat16 on CPUs with AVX512_BF16 / AMX) must keep >= 95% of the
float32 top-100 detections (same label, IoU >= 0.9, score within 0.02); float16 likewise on GPUs. Where the
hardware lacks it the tests skip and say why. Session options and CPU flag parsing are checked everywhere."""
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from common.errors import ConfigError
from inference import session_options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Float32 and reduced-precision detections of a seeded random ssd_300_vgg_lite on the grace_hopper photo, in a
# fresh process: TF_ENABLE_ONEDNN_OPTS must be set before TensorFlow is imported.
COMPARE = r"""
import json, sys, tempfile
import matplotlib.cbook, numpy as np, tensorflow as tf
from PIL import Image
from inference import session_options
from inference.detector import Detector
from training.checkpoints import save_initial_model
precision = sys.argv[1]
out = tempfile.mkdtemp()
save_initial_model(out, seed=5)
with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
    image = np.asarray(im.convert("RGB"))
result = {}
for name in ("float32", precision):
    with Detector(out, session_config=session_options.session_config(precision=name)) as det:
        d = det.detect(image)
    result[name] = {k: v.tolist() for k, v in d.items()}
print(json.dumps(result))
"""


def _top100_matched(ref, ours):
    """Fraction of ref's 100 best detections matched one-to-one (same label, IoU >= 0.9, |dscore| <= 0.02)."""
    order = sorted(range(len(ref["scores"])), key=lambda i: -ref["scores"][i])[:100]
    used, hits = set(), 0
    for i in order:
        label, score, a = ref["classes"][i], ref["scores"][i], ref["boxes"][i]
        for j, (l2, s2, b) in enumerate(zip(ours["classes"], ours["scores"], ours["boxes"])):
            if j in used or l2 != label or abs(s2 - score) > 0.02:
                continue
            ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ih * iw
            if union > 0 and ih * iw / union >= 0.9:
                used.add(j)
                hits += 1
                break
    return hits / max(len(order), 1)


def _compare(precision, env):
    proc = subprocess.run([sys.executable, "-c", COMPARE, precision], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=ROOT, **env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["float32"]["scores"]) >= 100
    return _top100_matched(result["float32"], result[precision])


def test_bf16_detections_match_float32():
    flags = session_options.cpu_flags()
    if not session_options.cpu_supports_bf16(flags):
        pytest.skip("this CPU has no avx512_bf16 or amx_bf16 flag in /proc/cpuinfo: oneDNN cannot run bfloat16 "
                    "here (TensorFlow falls back to emulated Eigen kernels), so there is nothing to check")
    assert _compare("bf16", {"TF_ENABLE_ONEDNN_OPTS": "1"}) >= 0.95


def test_float16_detections_match_float32_on_gpu():
    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("no GPU visible: mixed float16 (--precision=float16) is a GPU path")
    assert _compare("float16", {}) >= 0.95


def test_session_config_sets_the_rewrites():
    off = tf.compat.v1.ConfigProto().graph_options.rewrite_options.auto_mixed_precision
    config = session_options.session_config(2, 1)
    assert config.intra_op_parallelism_threads == 2 and config.inter_op_parallelism_threads == 1
    assert config.graph_options.rewrite_options.auto_mixed_precision == off
    assert config.graph_options.optimizer_options.global_jit_level == tf.compat.v1.OptimizerOptions.DEFAULT
    fp16 = session_options.session_config(precision="float16", xla=True)
    assert fp16.graph_options.rewrite_options.auto_mixed_precision != off
    assert fp16.graph_options.optimizer_options.global_jit_level == tf.compat.v1.OptimizerOptions.ON_1
    if session_options.onednn_enabled():
        bf16 = session_options.session_config(precision="bf16")
        assert bf16.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 != off
    else:  # the rewrite would silently do nothing: say so instead
        with pytest.raises(ConfigError, match="TF_ENABLE_ONEDNN_OPTS=1"):
            session_options.session_config(precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        session_options.session_config(precision="int8")


def test_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse avx2 fma avx512f avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    flags = session_options.cpu_flags(str(info))
    assert {"avx2", "avx512_bf16"} <= flags and session_options.cpu_supports_bf16(flags)
    assert not session_options.cpu_supports_bf16({"avx2", "fma", "avx512f"})
    assert session_options.cpu_supports_bf16({"amx_bf16"})
    assert session_options.cpu_flags(str(tmp_path / "missing")) == frozenset()
