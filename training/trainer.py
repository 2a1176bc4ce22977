"""The SSD training graph and loop: tf.distribute replicas, checkpoints, summaries, NaN guard, signals.

The graph (build_train_graph) runs one replica per device under a tf.distribute strategy. Each replica
gets batch_size / replicas images and computes the Caffe MultiBoxLoss of its images normalised by the
positives of the GLOBAL batch (an all-reduced count), plus its 1/replicas share of the weight decay; the
replicas' gradients are summed (tf.distribute's SUM, what the v1 optimiser does in graph mode), so the
update is exactly that of one device on the whole batch. Hard negative mining is per image, so it does not
depend on the split.

The loop (train) resumes from the newest readable checkpoint of train_dir (global step, optimiser state,
and so the learning-rate schedule) or else initialises from a warm-start checkpoint, logs a progress line
every log_every_n_steps, writes summaries every save_summaries_secs and checkpoints every
save_interval_secs (training/checkpoints.py). A non-finite loss or gradient stops it with
NonFiniteLossError naming the step and the loss terms, before anything of that step is saved; SIGINT or
SIGTERM ends it with a checkpoint of the current step.
"""
import dataclasses
import logging
import math
import os
import signal
import time
import typing

import tensorflow as tf

from common.errors import ConfigError, SSDError
from nets import model_config as model_config_lib
from box_ops import ssd_losses
from training import checkpoint_init, checkpoints, summaries
from training.checkpoint_init import variable_name

log = logging.getLogger("ssd.train")

SUM = tf.distribute.ReduceOp.SUM
NOT_DECAYED = ("/biases", "/BatchNorm/beta", "/BatchNorm/gamma")


class NonFiniteLossError(SSDError):
    """The loss or its gradient became NaN or infinite; the run stops without saving that step."""


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """Where a new run takes its initial weights (see checkpoint_init.plan_restore)."""
    checkpoint_path: str
    checkpoint_model_scope: typing.Optional[str] = None
    exclude_scopes: tuple = ()
    ignore_missing_vars: bool = False
    class_map: typing.Optional[object] = None  # checkpoint_init.ClassMap: class heads from mapped classes


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    train_dir: str
    batch_size: int                                  # the global batch, over all replicas
    max_number_of_steps: typing.Optional[int] = None
    log_every_n_steps: int = 10
    save_interval_secs: float = 600.0
    save_summaries_secs: float = 600.0
    max_checkpoints_to_keep: int = 5
    negative_ratio: float = 3.0
    loss_alpha: float = 1.0
    weight_decay: float = 0.0005                     # on every trained variable but the biases (Caffe)
    bias_learning_rate_multiplier: float = 1.0       # Caffe SSD prototxts use lr_mult 2 on biases
    trainable_scopes: tuple = ()
    num_summary_images: int = 3
    seed: typing.Optional[int] = None                # graph-level seed: the same initial weights every run


@dataclasses.dataclass
class TrainGraph:
    graph: object
    distribution: object
    global_step: object
    learning_rate: object
    iterator_initializer: object
    fetches: dict            # the step's reduced values (see LOSS_TERMS, counts, step, grad_norm), + train op
    summary_op: object
    model_variables: list
    variables_to_train: list
    saver: object


@dataclasses.dataclass
class TrainResult:
    step: int
    checkpoint: typing.Optional[str]
    stopped_by: str          # "max_number_of_steps", "signal SIGTERM", "end of input", "already done"
    records: list            # the logged progress records (dicts)


def _model_scope(names):
    tops = {n.split("/", 1)[0] for n in names}
    return tops.pop() if len(tops) == 1 else ""


def build_train_graph(model, input_fn, learning_rate_fn, optimizer_fn, distribution, options):
    """Builds the distributed training step in the current default graph.

    Args:
      model: nets_factory.SSDModel (built without weight decay: the trainer adds it).
      input_fn: () -> tf.data.Dataset of dict batches of the global batch size (image, gclasses,
        glocalisations, boxes, ...; datasets/input_pipeline.py).
      learning_rate_fn: global_step tensor -> learning-rate tensor. optimizer_fn: lr -> v1 Optimizer.
      distribution: training.distribution.Distribution. options: TrainOptions.
    """
    strategy = distribution.strategy
    replicas = strategy.num_replicas_in_sync
    if options.batch_size % replicas:
        raise ConfigError("batch_size", f"{options.batch_size} does not split over {replicas} replicas")
    with strategy.scope():
        global_step = tf.compat.v1.train.get_or_create_global_step()
        iterator = strategy.make_dataset_iterator(input_fn())
        batch = iterator.get_next()
        learning_rate = learning_rate_fn(global_step.read_value())
        optimizer = optimizer_fn(learning_rate)
        trained = []

        @tf.autograph.experimental.do_not_convert  # plain graph code; autograph would only slow the build
        def replica_step(inputs):
            ctx = tf.distribute.get_replica_context()
            step_before = tf.identity(global_step.read_value())
            (logits, localisations), _ = model.network_fn(inputs["image"])
            local_positives = tf.reduce_sum(tf.cast(inputs["gclasses"] > 0, tf.float32))
            global_positives = ctx.all_reduce(SUM, local_positives)
            terms = ssd_losses.ssd_losses(logits, localisations, inputs["gclasses"], inputs["glocalisations"],
                                          negative_ratio=options.negative_ratio, alpha=options.loss_alpha,
                                          num_positives=global_positives)
            variables = [v for v in tf.compat.v1.trainable_variables() if v is not global_step]
            to_train = checkpoint_init.variables_to_train(variables, options.trainable_scopes)
            if not to_train:
                raise ConfigError("trainable_scopes", f"no variable matches {list(options.trainable_scopes)}")
            trained[:] = to_train
            # No decay on biases (Caffe) nor on batch norm's offset and scale (TF-Slim, TF OD API).
            decayed = [v for v in to_train if not variable_name(v).endswith(NOT_DECAYED)]
            regularization = tf.constant(0.0)
            if options.weight_decay and decayed:
                regularization = options.weight_decay / replicas * tf.add_n([tf.nn.l2_loss(v) for v in decayed])
            total = terms["total_loss"] + regularization
            with tf.control_dependencies([step_before]):  # read the step before this update increments it
                total = tf.identity(total)
            grads_and_vars = optimizer.compute_gradients(total, var_list=to_train)
            grads_and_vars = [(g * options.bias_learning_rate_multiplier
                               if g is not None and options.bias_learning_rate_multiplier != 1.0
                               and variable_name(v).endswith("/biases") else g, v) for g, v in grads_and_vars]
            grad_norm = tf.linalg.global_norm([g for g, _ in grads_and_vars if g is not None])
            apply = optimizer.apply_gradients(grads_and_vars, global_step=global_step)
            out = dict(terms, total_loss=total, regularization=regularization, grad_norm_sq=grad_norm ** 2)
            with tf.control_dependencies([apply]):
                out = {k: tf.identity(v) for k, v in out.items()}
                out["step"] = step_before + 1
            return out

        per_replica = strategy.extended.call_for_each_replica(replica_step, args=(batch,))
        fetches = {k: strategy.reduce(SUM, v, axis=None) for k, v in per_replica.items() if k != "step"}
        fetches["grad_norm"] = tf.sqrt(fetches.pop("grad_norm_sq"))  # sqrt of the replicas' sum of squares
        fetches["step"] = strategy.experimental_local_results(per_replica["step"])[0]
        fetches["learning_rate"] = learning_rate
        # Batch norm's moving averages (nets/batch_norm.py): every replica's update op, each on the replica's
        # own copy (sync-on-read variables; checkpoints store the mean over the replicas).
        update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
        fetches["train_op"] = tf.group(strategy.group(per_replica), *update_ops)
        local_inputs = {k: strategy.experimental_local_results(v)[0] for k, v in batch.items()}
        summary_op = summaries.build_summaries(fetches, learning_rate, local_inputs["image"], local_inputs["boxes"],
                                               model.mean_rgb, options.num_summary_images, options.batch_size)
        optimizer_names = {variable_name(v) for v in optimizer.variables()}
        all_variables = tf.compat.v1.global_variables()
        model_variables = [v for v in all_variables
                           if v is not global_step and variable_name(v) not in optimizer_names]
        saver = tf.compat.v1.train.Saver(all_variables, max_to_keep=None, save_relative_paths=True)
    return TrainGraph(tf.compat.v1.get_default_graph(), distribution, global_step, learning_rate,
                      iterator.initializer, fetches, summary_op, model_variables, list(trained), saver)


def check_train_dir(train_dir, config):
    """Raises ConfigError when train_dir's ssd_config.json describes another model than `config`."""
    path = model_config_lib.config_path(train_dir)
    if os.path.exists(path):
        old = model_config_lib.load_model_config(path)
        for key in ("model_name", "num_classes", "class_names"):
            if old.get(key) != config.get(key):
                raise ConfigError(path, f"train_dir holds a model with {key}={old.get(key)!r}, this run has "
                                        f"{config.get(key)!r}: use another training directory")


def prepare_train_dir(train_dir, config):
    """Creates train_dir and writes ssd_config.json, after checking any one there (check_train_dir)."""
    check_train_dir(train_dir, config)
    os.makedirs(train_dir, exist_ok=True)
    model_config_lib.save_model_config(train_dir, config)


class _StopSignals:
    """SIGINT/SIGTERM set a flag that the loop checks between steps (a second SIGINT aborts at once)."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        log.info("%s received: saving a checkpoint after this step", self.received)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _check_finite(values, step, keeper):
    bad = [k for k in ("total_loss", "grad_norm") if not math.isfinite(values[k])]
    if not bad:
        return
    terms = ", ".join(f"{k}={values[k]:.6g}" for k in summaries.LOSS_TERMS + ("grad_norm",))
    last = keeper.latest
    where = f"last good checkpoint: {last}" if last else "no checkpoint was written"
    raise NonFiniteLossError(keeper.train_dir, f"non-finite {' and '.join(bad)} at step {step} ({terms}); "
                                               f"stopped without saving this step, {where}")


def train(model, input_fn, learning_rate_fn, optimizer_fn, distribution, options, warm_start=None,
          model_config=None, on_step=None):
    """Trains until max_number_of_steps, the end of the input or a stop signal; returns TrainResult.

    model_config: written to train_dir as ssd_config.json (checked against an existing one).
    on_step(step, values): called after every step (tests, benchmarks).
    Raises NonFiniteLossError, CheckpointError (warm start does not fit; no checkpoint restores), ConfigError.
    """
    if model_config is not None:
        check_train_dir(options.train_dir, model_config)  # before the long graph build
    with tf.Graph().as_default():
        if options.seed is not None:
            tf.compat.v1.set_random_seed(options.seed)
        tg = build_train_graph(model, input_fn, learning_rate_fn, optimizer_fn, distribution, options)
        keeper = checkpoints.CheckpointKeeper(options.train_dir, tg.saver,
                                              [variable_name(v) for v in tf.compat.v1.global_variables()],
                                              options.max_checkpoints_to_keep)
        initializer = None
        if keeper.latest is None and warm_start is not None:
            plan = checkpoint_init.plan_restore(
                tg.model_variables, warm_start.checkpoint_path, _model_scope(variable_name(v)
                                                                             for v in tg.model_variables),
                warm_start.checkpoint_model_scope, warm_start.exclude_scopes, warm_start.ignore_missing_vars,
                class_map=warm_start.class_map)
            initializer = checkpoint_init.CheckpointInitializer(plan, tg.model_variables)
        elif warm_start is not None:
            log.info("ignoring --checkpoint_path: %s has a checkpoint to resume from", options.train_dir)
        init_op = tf.compat.v1.global_variables_initializer()
        tg.graph.finalize()
        with tf.compat.v1.Session(distribution.session_target, config=distribution.session_config) as session:
            session.run(init_op)
            session.run(tg.iterator_initializer)
            resumed = keeper.restore_latest(session)
            if resumed:
                log.info("resumed from %s", resumed)
            elif initializer is not None:
                initializer(session)
                for notice in initializer.plan.notices:
                    log.warning("%s", notice)
                log.info("initialised %s", initializer.plan.summary())
            # Only now that the weights are set: a run that fails to start leaves no train_dir behind.
            os.makedirs(options.train_dir, exist_ok=True)
            if model_config is not None and distribution.is_chief:
                prepare_train_dir(options.train_dir, model_config)
            log.info("%s; training %d of %d variables; global batch %d", distribution.description,
                     len(tg.variables_to_train), len(tg.model_variables), options.batch_size)
            return _loop(session, tg, keeper, options, distribution.is_chief, on_step)


def _loop(session, tg, keeper, options, is_chief, on_step):
    step = int(session.run(tg.global_step))
    max_steps = options.max_number_of_steps
    if max_steps is not None and step >= max_steps:
        log.info("global step %d already reaches --max_number_of_steps=%d", step, max_steps)
        return TrainResult(step, keeper.latest, "already done", [])
    writer = tf.compat.v1.summary.FileWriter(options.train_dir) if is_chief else None
    records, checkpoint = [], keeper.latest
    last_save, last_summary = time.time(), -math.inf
    interval_start, interval_steps, interval_positives = time.time(), 0, 0.0
    fetches = {k: v for k, v in tg.fetches.items()}
    with_summary = dict(fetches, summary=tg.summary_op)
    stopped_by = "max_number_of_steps"
    with _StopSignals() as stop:
        try:
            while True:
                if stop.received:
                    stopped_by = f"signal {stop.received}"
                    break
                now = time.time()
                want_summary = writer is not None and now - last_summary >= options.save_summaries_secs
                try:
                    values = session.run(with_summary if want_summary else fetches)
                except tf.errors.OutOfRangeError:
                    stopped_by = "end of input"
                    break
                step = int(values["step"])
                _check_finite(values, step, keeper)
                interval_steps += 1
                interval_positives += float(values["num_positives"])
                if want_summary:
                    writer.add_summary(values["summary"], step)
                    last_summary = now
                if on_step is not None:
                    on_step(step, values)
                if step % options.log_every_n_steps == 0 or step == max_steps:
                    elapsed = time.time() - interval_start
                    record = {k: float(values[k]) for k in summaries.LOSS_TERMS + (
                        "num_positives", "num_negatives", "learning_rate", "grad_norm")}
                    record["step"] = step
                    record["positives_per_image"] = interval_positives / (options.batch_size * interval_steps)
                    record["secs_per_step"] = elapsed / interval_steps
                    record["images_per_sec"] = options.batch_size * interval_steps / max(elapsed, 1e-9)
                    record["eta_secs"] = (max_steps - step) * record["secs_per_step"] if max_steps else None
                    records.append(record)
                    log.info("%s", summaries.progress_line(record, max_steps))
                    if not interval_positives:
                        log.warning("no positive anchors in steps %d-%d: no ground-truth box matched an anchor, so "
                                    "nothing is learnt but background (check the records' boxes, the match "
                                    "threshold and the model's anchors)", step - interval_steps + 1, step)
                    interval_start, interval_steps, interval_positives = time.time(), 0, 0.0
                done = max_steps is not None and step >= max_steps
                if is_chief and (done or time.time() - last_save >= options.save_interval_secs):
                    checkpoint = keeper.save(session, step)
                    last_save = time.time()
                if done:
                    break
        finally:
            if writer is not None:
                writer.close()
    if is_chief and (checkpoint is None or checkpoints.checkpoint_step(checkpoint) != step):
        checkpoint = keeper.save(session, step)
    log.info("stopped at step %d (%s); checkpoint %s", step, stopped_by, checkpoint)
    return TrainResult(step, checkpoint, stopped_by, records)
