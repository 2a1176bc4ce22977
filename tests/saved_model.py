"""The one way the tests make "a small saved model": a network of the factory, randomly initialised (or given
its values), saved as training saves it: model.ckpt[-step] plus ssd_config.json in one directory."""
import os

import tensorflow as tf

from datasets.voc_classes import VOC_CLASSES
from nets import model_config, nets_factory


def save_model(directory, model_name="ssd_300_vgg_lite", class_names=VOC_CLASSES, seed=0, config=None,
               load_values=None, global_step=None, write_config=True):
    """Writes the model into `directory` and returns the checkpoint prefix.

    config: the model configuration (default: nets_factory.default_config(model_name, class_names=...)).
    load_values(session, model, variables): sets variables after the random initialisation (e.g. fixed
    weights, random batch norm statistics). global_step: the checkpoint's step suffix.
    """
    config = config or nets_factory.default_config(model_name, class_names=class_names)
    os.makedirs(directory, exist_ok=True)
    with tf.Graph().as_default():
        if seed is not None:
            tf.compat.v1.set_random_seed(seed)
        model = nets_factory.build_model(config)
        height, width = model.image_size
        model.network_fn(tf.compat.v1.placeholder(tf.float32, [None, height, width, 3]))
        variables = tf.compat.v1.global_variables()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            if load_values is not None:
                load_values(sess, model, variables)
            prefix = tf.compat.v1.train.Saver(variables).save(
                sess, os.path.join(str(directory), "model.ckpt"), global_step=global_step, write_meta_graph=False)
    if write_config:
        model_config.save_model_config(str(directory), config)
    return prefix
