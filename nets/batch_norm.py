"""Batch normalisation (Ioffe & Szegedy, 2015) with TF-Slim's `batch_norm` signature and variable names.

tf-slim 1.1.0's `slim.batch_norm` builds on `tf_keras.legacy_tf_layers`, which tf-keras 2.21 no longer has,
so it cannot run here. This one is a drop-in: the same arguments (the ones TF-Slim's nets pass), the same
variables under `<scope>/BatchNorm/` (`beta`, `gamma`, `moving_mean`, `moving_variance`, as in TF-Slim's
released ImageNet checkpoints), the fused kernel (`tf.compat.v1.nn.fused_batch_norm`), and arg_scope
values given to `slim.batch_norm` apply to it too (it shares slim's arg_scope key), so the
`arg_scope([slim.batch_norm], is_training=...)` inside `tf_slim.nets.resnet_v1` / `inception_v2` reaches it.

Training mode (is_training True) normalises by the batch's mean and biased variance and updates the moving
averages, `moving -= (1 - decay) * (moving - batch)`, with the batch variance Bessel-corrected (n / (n - 1)),
as TF-Slim's fused path and Caffe's BatchNorm do. The update ops go into `updates_collections` (UPDATE_OPS:
the trainer runs them with each step) or, with `updates_collections=None`, run before the output.
Inference mode (is_training False) uses the moving statistics and updates nothing: after training, and for
fine-tuning with small batches (`--freeze_batch_norm`). `is_training` may also be a boolean tensor.

The moving averages are sync-on-read variables aggregated by MEAN (as Keras' BatchNormalization makes them):
under tf.distribute (MirroredStrategy) each replica normalises by its own batch and updates its own copy, with
no communication in the step, and reading them outside the replicas (checkpoints, evaluation) gives the mean
over the replicas; assigning them there (warm start) sets every copy.
"""
import tensorflow as tf
import tf_slim as slim

UPDATE_OPS = tf.compat.v1.GraphKeys.UPDATE_OPS
# fused_batch_norm raises epsilon below this to it (cuDNN's minimum), as TF-Slim's fused path does.
MIN_EPSILON = 1.001e-5


def _collections(variables_collections, name):
    if isinstance(variables_collections, dict):
        extra = variables_collections.get(name)
    else:
        extra = variables_collections
    return list(extra or [])


def _variable(name, shape, initializer, trainable, collections, regularizer=None, moving=False):
    return slim.model_variable(
        name, shape=shape, dtype=tf.float32, initializer=initializer, regularizer=regularizer,
        trainable=trainable, collections=collections,
        synchronization=tf.VariableSynchronization.ON_READ if moving else tf.VariableSynchronization.AUTO,
        aggregation=tf.VariableAggregation.MEAN if moving else tf.VariableAggregation.NONE)


def _batch_norm(inputs, decay=0.999, center=True, scale=False, epsilon=0.001, activation_fn=None,
                param_initializers=None, param_regularizers=None, updates_collections=UPDATE_OPS,
                is_training=True, reuse=None, variables_collections=None, outputs_collections=None,
                trainable=True, batch_weights=None, fused=None, data_format="NHWC",
                zero_debias_moving_mean=False, scope=None, renorm=False, renorm_clipping=None,
                renorm_decay=0.99, adjustment=None):
    """TF-Slim's batch_norm (fused path): inputs [B, ..., C] NHWC (rank 2 or 4) -> same shape.

    `fused` is accepted for signature compatibility (always fused); batch_weights, renorm, adjustment,
    zero_debias_moving_mean and NCHW, which none of the project's networks use, raise ValueError.
    """
    del fused, renorm_clipping, renorm_decay
    if batch_weights is not None or renorm or adjustment is not None or zero_debias_moving_mean:
        raise ValueError("batch_norm: batch_weights, renorm, adjustment and zero_debias_moving_mean are "
                         "not supported")
    if data_format != "NHWC":
        raise ValueError(f"batch_norm: only NHWC is supported, got {data_format}")
    param_initializers = param_initializers or {}
    param_regularizers = param_regularizers or {}
    with tf.compat.v1.variable_scope(scope, "BatchNorm", [inputs], reuse=reuse) as sc:
        inputs = tf.convert_to_tensor(inputs)
        rank = inputs.shape.ndims
        if rank not in (2, 4):
            raise ValueError(f"batch_norm: inputs {inputs.name} must have rank 2 or 4, got {rank}")
        channels = inputs.shape[-1]
        if channels is None:
            raise ValueError(f"batch_norm: the channel dimension of {inputs.name} must be known")
        original = inputs
        if rank == 2:
            inputs = tf.reshape(inputs, [-1, 1, 1, channels])
        shape = [channels]
        if center:
            beta = _variable("beta", shape, param_initializers.get("beta", tf.compat.v1.zeros_initializer()),
                             trainable, _collections(variables_collections, "beta"),
                             param_regularizers.get("beta"))
        else:
            beta = tf.zeros(shape, tf.float32)
        if scale:
            gamma = _variable("gamma", shape, param_initializers.get("gamma", tf.compat.v1.ones_initializer()),
                              trainable, _collections(variables_collections, "gamma"),
                              param_regularizers.get("gamma"))
        else:
            gamma = tf.ones(shape, tf.float32)
        # Moving statistics are never trained by gradients (TF-Slim: trainable=False).
        moving_mean = _variable("moving_mean", shape,
                                param_initializers.get("moving_mean", tf.compat.v1.zeros_initializer()),
                                False, _collections(variables_collections, "moving_mean"), moving=True)
        moving_variance = _variable("moving_variance", shape,
                                    param_initializers.get("moving_variance", tf.compat.v1.ones_initializer()),
                                    False, _collections(variables_collections, "moving_variance"), moving=True)
        epsilon = max(float(epsilon), MIN_EPSILON)
        dtype = inputs.dtype.base_dtype

        def train_branch():
            out, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=epsilon, is_training=True)
            return out, mean, variance

        def inference_branch():
            out, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=moving_mean, variance=moving_variance, epsilon=epsilon,
                is_training=False)
            return out, tf.identity(moving_mean), tf.identity(moving_variance)

        training = tf.get_static_value(is_training) if isinstance(is_training, tf.Tensor) else is_training
        if training is None:
            outputs, mean, variance = tf.cond(is_training, train_branch, inference_branch)
        elif training:
            outputs, mean, variance = train_branch()
        else:
            outputs, mean, variance = inference_branch()
        outputs = tf.cast(outputs, dtype)

        if training is None or training:
            # Under a boolean tensor the update factor is 0 when not training: the moving values stay.
            factor = 1.0 - decay
            if training is None:
                factor = tf.where(is_training, factor, 0.0)
            update_mean = moving_mean.assign_sub((moving_mean - mean) * factor)
            update_variance = moving_variance.assign_sub((moving_variance - variance) * factor)
            updates = [update_mean, update_variance]
            if updates_collections is None:
                with tf.control_dependencies(updates):
                    outputs = tf.identity(outputs)
            else:
                for collection in ([updates_collections] if isinstance(updates_collections, str)
                                   else updates_collections):
                    for update in updates:
                        tf.compat.v1.add_to_collection(collection, update)
        if rank == 2:
            outputs = tf.reshape(outputs, tf.shape(original))
        if activation_fn is not None:
            outputs = activation_fn(outputs)
        return slim.utils.collect_named_outputs(outputs_collections, sc.name, outputs)


# Share slim.batch_norm's arg_scope key: arg_scope([slim.batch_norm], ...) in tf_slim's nets applies here.
_batch_norm._key_op = slim.arg_scope_func_key(slim.batch_norm)
batch_norm = slim.add_arg_scope(_batch_norm)


def batch_norm_params(decay, epsilon, scale=True, is_training=True):
    """normalizer_params for slim.conv2d(normalizer_fn=batch_norm) (the TF-Slim nets' arg_scope dicts)."""
    return {"decay": decay, "epsilon": epsilon, "scale": scale, "is_training": is_training,
            "updates_collections": UPDATE_OPS}


def batch_norm_mode(params, is_training):
    """arg_scope values of batch_norm for a network: its mode, and params.batch_norm_decay when set (a
    lower decay, e.g. 0.9, lets the moving averages catch up within a short run)."""
    mode = {"is_training": is_training}
    if getattr(params, "batch_norm_decay", None):
        mode["decay"] = float(params.batch_norm_decay)
    return mode
