"""Writes chuanqi305's Caffe MobileNet-SSD (MobileNetSSD_deploy: depthwise convolutions + BatchNorm + Scale,
Caffe's layer naming, random weights) and converts it with caffe_to_tensorflow.py --model_name=caffe_ssd, so that
bench_inference.py can time the project against OpenCV's DNN on it without the release at hand (the speed of a
network does not depend on its weights; caffe_converter/caffe_writer.py scales them so NMS has real work).

    python benchmarks/make_caffe_mobilenet_ssd.py --output_dir=/tmp/mobilenet_ssd
    python benchmarks/bench_inference.py --checkpoint_path=/tmp/mobilenet_ssd/checkpoint --batch_size=8 \
        --compare_opencv /tmp/mobilenet_ssd/deploy.prototxt /tmp/mobilenet_ssd/model.caffemodel
"""
import os
import pathlib
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli import flags  # noqa: E402  (first: it sets TensorFlow's environment defaults)

# MobileNet-SSD's data layer: (BGR - 127.5) * 0.007843.
MEAN_BGR, INPUT_SCALE = "127.5,127.5,127.5", 0.007843


def main(argv=None):
    from caffe_converter import caffe_writer
    p = flags.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output_dir", required=True)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    out = pathlib.Path(args.output_dir)
    net, convs = caffe_writer.mobilenet_ssd_net()
    prototxt, caffemodel = caffe_writer.write_deploy_model(out, net, caffe_writer.mobilenet_ssd_weights(convs, args.seed))
    import caffe_to_tensorflow
    caffe_to_tensorflow.main(["--model_name=caffe_ssd", f"--caffemodel_path={caffemodel}",
                              f"--prototxt_path={prototxt}", f"--mean_values={MEAN_BGR}",
                              f"--input_scale={INPUT_SCALE}", f"--output_dir={out / 'checkpoint'}"])
    print(f"{prototxt}\n{caffemodel}\n{out / 'checkpoint'}")
    return 0


if __name__ == "__main__":
    from common.errors import run_main
    run_main(main)
