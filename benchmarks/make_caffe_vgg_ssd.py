"""Writes a Caffe VGG SSD-300 or SSD-512 (the VGG_VOC0712_SSD deploy net, Caffe's layer naming, random
weights) and converts it with caffe_to_tensorflow.py, so that bench_inference.py can time the project against
OpenCV's DNN on the same model without the Caffe release at hand. The speed of a network does not depend on its
weights; the random ones are scaled so that scores are spread and NMS has real work (caffe_converter/caffe_writer.py).

    python benchmarks/make_caffe_vgg_ssd.py --model_name=ssd_300_vgg --output_dir=/tmp/vgg300
    # -> /tmp/vgg300/deploy.prototxt, /tmp/vgg300/model.caffemodel, /tmp/vgg300/checkpoint/ (model.ckpt.*, ssd_config.json)
    python benchmarks/bench_inference.py --checkpoint_path=/tmp/vgg300/checkpoint --batch_size=8 \
        --compare_opencv /tmp/vgg300/deploy.prototxt /tmp/vgg300/model.caffemodel
"""
import os
import pathlib
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli import flags  # noqa: E402  (first: it sets TensorFlow's environment defaults)


def main(argv=None):
    from caffe_converter import caffe_writer
    p = flags.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_name", default="ssd_300_vgg", choices=sorted(caffe_writer.VGG_SSD))
    p.add_argument("--output_dir", required=True)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    out = pathlib.Path(args.output_dir)
    net, convs = caffe_writer.vgg_ssd_net(args.model_name)
    prototxt, caffemodel = caffe_writer.write_deploy_model(out, net, caffe_writer.vgg_ssd_weights(convs, args.seed))
    import caffe_to_tensorflow
    caffe_to_tensorflow.main([f"--model_name={args.model_name}", "--num_classes=21", f"--caffemodel_path={caffemodel}",
                              f"--prototxt_path={prototxt}", f"--output_dir={out / 'checkpoint'}"])
    print(f"{prototxt}\n{caffemodel}\n{out / 'checkpoint'}")
    return 0


if __name__ == "__main__":
    from common.errors import run_main
    run_main(main)
