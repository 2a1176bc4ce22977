"""common/tf_env.py: TensorFlow reads TF_ENABLE_ONEDNN_OPTS when it loads, so the project's default only
takes effect when the project is imported first; a program that imports TensorFlow first, where TensorFlow's
own default leaves oneDNN off (AVX2 CPUs), gets a RuntimeWarning pointing at its import line. Each case runs
in a fresh interpreter without the variable, as a user's program starts."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPORT = ("from tensorflow.python.util import _pywrap_util_port\n"
          "found = [(str(w.message), os.path.basename(w.filename), w.lineno) for w in caught]\n"
          "print(json.dumps({'onednn': bool(_pywrap_util_port.IsMklEnabled()), 'warnings': found}))\n")


def run_program(imports, tmp_path, onednn_env=None):
    program = tmp_path / "user_program.py"
    program.write_text("import json, os, warnings\n"
                       "with warnings.catch_warnings(record=True) as caught:\n"
                       "    warnings.simplefilter('always')\n" +
                       "".join(f"    {line}\n" for line in imports) + REPORT)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "PYTHONWARNINGS")}
    env.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    if onednn_env is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn_env
    proc = subprocess.run([sys.executable, str(program)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def onednn_warnings(result):
    return [w for w in result["warnings"] if "oneDNN" in w[0]]


def test_the_project_imported_first_turns_onednn_on_without_a_warning(tmp_path):
    result = run_program(["from inference.detector import Detector", "import tensorflow"], tmp_path)
    assert result["onednn"] and onednn_warnings(result) == []


def test_tensorflow_imported_first_warns_where_onednn_stayed_off(tmp_path):
    result = run_program(["import tensorflow", "from inference.detector import Detector"], tmp_path)
    expected = [] if result["onednn"] else \
        [("user_program.py", 5)]  # the line that imported the project, not the project's own files
    assert [(w[1], w[2]) for w in onednn_warnings(result)] == expected, result
    if not result["onednn"]:
        assert "TF_ENABLE_ONEDNN_OPTS=1" in onednn_warnings(result)[0][0]


def test_an_explicit_setting_is_the_users_choice(tmp_path):
    result = run_program(["import tensorflow", "import nets.nets_factory"], tmp_path, onednn_env="0")
    assert not result["onednn"] and onednn_warnings(result) == []
