"""tf.distribute for the tf.compat.v1 training graph: one machine's devices, or several machines.

- One machine: `tf.compat.v1.distribute.MirroredStrategy` over the given devices (default: every visible
  GPU, else the CPU). One device is a MirroredStrategy of one replica, so there is a single code path.
- Several machines: `tf.compat.v1.distribute.experimental.MultiWorkerMirroredStrategy`, configured from
  the TF_CONFIG environment variable, which every worker sets to the same cluster and its own task, e.g.

      TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}'

  Each worker runs the same command with its GPUs; variables are all-reduced with collective ops, worker 0
  (or the "chief" task) writes checkpoints and summaries, and --train_dir (with --checkpoint_path and the
  records) must be on a file system every worker reads, so that a restarted cluster resumes everywhere
  from the same checkpoint.

In graph mode the v1 optimiser under these strategies sums the replicas' gradients (the loss is not
divided by the number of replicas, tf.distribute's SUM reduction): the trainer makes each replica's loss
its share of the global-batch loss, so that the sum is the gradient of the global batch.
"""
import dataclasses
import json
import os

import tensorflow as tf

from common.precision import apply_precision

DISTRIBUTIONS = ("auto", "mirrored", "multi_worker")


@dataclasses.dataclass
class Distribution:
    """A strategy with what the session needs: its target (a server for several workers) and config."""
    strategy: object
    session_target: str
    session_config: object
    is_chief: bool
    num_workers: int
    description: str

    @property
    def num_replicas(self):
        return self.strategy.num_replicas_in_sync


def _cluster_workers(tf_config):
    cluster = tf_config.get("cluster") or {}
    return sum(len(cluster.get(job) or []) for job in ("chief", "worker"))


def make_distribution(kind="auto", devices=None, session_config=None, precision="float32"):
    """Builds the strategy, in graph mode, before the training graph.

    Args:
      kind: "auto" (multi_worker when TF_CONFIG names more than one worker, else mirrored), "mirrored" or
        "multi_worker". devices: device names for "mirrored" (default: every visible GPU, else the CPU).
      session_config: a tf.compat.v1.ConfigProto to extend (default: soft placement).
      precision: "float32", or "bf16" for mixed bfloat16 (common/precision.py; the description says so).
    """
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {kind!r}")
    config = apply_precision(session_config or tf.compat.v1.ConfigProto(allow_soft_placement=True), precision)
    mixed = "" if precision == "float32" else f"; {precision} mixed precision"
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    if kind == "auto":
        kind = "multi_worker" if _cluster_workers(tf_config) > 1 else "mirrored"
    if kind == "mirrored":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in gpus] or ["/cpu:0"]
        # Built in graph mode, like the graphs it serves. Made while eager execution was on (as scripts run),
        # a training step over two logical CPU devices (--clone_on_cpu --num_clones=2) waited forever in its
        # first session.run, its tf.data and collective-ops threads idle (tests/scripts/test_train_ssd_network.py).
        with tf.Graph().as_default():
            strategy = tf.compat.v1.distribute.MirroredStrategy(devices=list(devices))
        config = strategy.update_config_proto(config)
        return Distribution(strategy, "", config, True, 1,
                            f"MirroredStrategy over {len(devices)} device(s): {', '.join(devices)}{mixed}")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    cluster = resolver.cluster_spec()
    if not cluster.jobs:
        raise ValueError("multi_worker distribution needs TF_CONFIG with a cluster (see training/distribution.py)")
    with tf.Graph().as_default():  # built eagerly, the strategy would start its own (eager) server
        strategy = tf.compat.v1.distribute.experimental.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    config = strategy.update_config_proto(config)
    server = tf.distribute.Server(cluster, job_name=resolver.task_type, task_index=resolver.task_id,
                                  config=config, start=True)
    is_chief = (resolver.task_type == "chief" or
                (resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster.jobs))
    workers = _cluster_workers(tf_config)
    return Distribution(strategy, server.target, config, is_chief, workers,
                        f"MultiWorkerMirroredStrategy: {resolver.task_type} {resolver.task_id} of {workers} "
                        f"workers, {strategy.num_replicas_in_sync} replicas in all{mixed}")
