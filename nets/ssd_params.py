"""SSDParams: everything that defines an SSD network's geometry, in one frozen object.

One instance per network (SSD-300, SSD-512, the lite variant) lives in that network's file; a converted or
fine-tuned model carries its own copy in its `ssd_config.json`, so nothing downstream reads globals.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class SSDParams:
    img_shape: tuple            # (height, width) of the network input
    num_classes: int            # including background (label 0)
    feat_layers: tuple          # end_points names of the feature layers carrying heads
    feat_shapes: tuple          # ((H, W), ...) of those layers for img_shape
    anchor_min_sizes: tuple     # per layer: tuple of PriorBox min_size values, in pixels
    anchor_max_sizes: tuple     # per layer: tuple of PriorBox max_size values (may be empty)
    anchor_ratios: tuple        # per layer: tuple of aspect ratios (1 implied; flipped when anchor_flip)
    anchor_steps: tuple         # per layer: PriorBox step in pixels
    anchor_offset: float = 0.5
    anchor_flip: bool = True
    anchor_clip: bool = False
    normalizations: tuple = ()  # per layer: initial L2-normalisation scale, or -1 for none
    prior_variances: tuple = (0.1, 0.1, 0.2, 0.2)
    channel_divisor: int = 1    # divides every hidden layer's channel count (8 for the *_lite models)
    depth_multiplier: float = 1.0  # channel multiplier of a MobileNet base (TF-Slim's depth_multiplier)
    input_scale: float = 1.0
    batch_norm_decay: float = None  # moving-average decay of batch norm in training (None: the base's default)    # multiplies the mean-subtracted input (1 / 127.5: Inception's [-1, 1])

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        def tuplify(v):
            return tuple(tuplify(x) for x in v) if isinstance(v, (list, tuple)) else v
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SSDParams fields: {sorted(unknown)}")
        return cls(**{k: tuplify(v) for k, v in d.items()})
