"""Model name -> pre-processing function (TF-Slim's preprocessing_factory)."""
from preprocessing import ssd_vgg_preprocessing

preprocessing_fn_map = {
    "ssd_300_vgg": ssd_vgg_preprocessing,
    "ssd_300_vgg_lite": ssd_vgg_preprocessing,
    "ssd_512_vgg": ssd_vgg_preprocessing,
    "caffe_ssd": ssd_vgg_preprocessing,
}


def get_preprocessing(name, is_training=False):
    """fn(image, ...) for the model `name`: preprocess_for_train or preprocess_for_eval of its module."""
    if name not in preprocessing_fn_map:
        raise ValueError(f"Preprocessing name [{name}] was not recognized")
    module = preprocessing_fn_map[name]
    return module.preprocess_for_train if is_training else module.preprocess_for_eval
