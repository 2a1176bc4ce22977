"""Model name -> pre-processing function (TF-Slim's preprocessing_factory)."""
from preprocessing import ssd_vgg_preprocessing

preprocessing_fn_map = {
    "ssd_300_vgg": ssd_vgg_preprocessing,
    "ssd_300_vgg_lite": ssd_vgg_preprocessing,
    "ssd_512_vgg": ssd_vgg_preprocessing,
    "caffe_ssd": ssd_vgg_preprocessing,
}
# The batch norm bases: the same augmentation; their [-1, 1] input range comes from the model configuration
# (mean_rgb 127.5 subtracted here, params.input_scale 1 / 127.5 applied by nets_factory.get_network_fn).
preprocessing_fn_map.update({
    "ssd_300_resnet_v1_50": ssd_vgg_preprocessing,
    "ssd_300_inception_v2": ssd_vgg_preprocessing,
    "ssdlite_320_mobilenet_v2": ssd_vgg_preprocessing,
})


def get_preprocessing(name, is_training=False, from_encoded=False):
    """The pre-processing function of the model `name`.

    is_training False: preprocess_for_eval(images, out_shape, mean_rgb).
    is_training True: preprocess_for_train(image, labels, boxes, difficult, out_shape, mean_rgb, seed, ...)
    -> (image, labels, boxes, difficult); with from_encoded, preprocess_encoded_for_train(encoded, height,
    width, labels, boxes, difficult, out_shape, mean_rgb, seed, ...), which decodes only the crop it uses.
    """
    if name not in preprocessing_fn_map:
        raise ValueError(f"Preprocessing name [{name}] was not recognized")
    module = preprocessing_fn_map[name]
    if not is_training:
        return module.preprocess_for_eval
    return module.preprocess_encoded_for_train if from_encoded else module.preprocess_for_train
