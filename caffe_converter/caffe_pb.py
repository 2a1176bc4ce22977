"""Caffe's protobuf messages, built at import time from a schema written here (no protoc, no Caffe).

The schema below is a faithful subset of BVLC Caffe's `src/caffe/proto/caffe.proto` plus the messages that
Wei Liu's SSD fork (weiliu89/caffe, branch ssd) adds: Permute (LayerParameter field 202), PriorBox (203),
DetectionOutput (204) and Normalize (206). Field numbers, types and defaults are Caffe's own, so binary
`.caffemodel` files parse and text `deploy.prototxt` files merge exactly as in Caffe. Fields the converter
never needs (solver, data layers, losses, ...) are left out: in binary files protobuf skips unknown fields,
and text files are merged with `allow_unknown_field=True`.

Exports one class per message, e.g. `NetParameter`, `LayerParameter`, `BlobProto`.
"""
import re

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "caffe"

_SCHEMA = """
enum Phase { TRAIN = 0; TEST = 1; }

// NVIDIA Caffe's storage types (OpenCV reads them too); blobs normally use the float `data` field.
enum Type { DOUBLE = 0; FLOAT = 1; FLOAT16 = 2; INT = 3; UINT = 4; }

message BlobShape {
  repeated int64 dim = 1 [packed = true];
}

message BlobProto {
  optional BlobShape shape = 7;
  repeated float data = 5 [packed = true];
  repeated float diff = 6 [packed = true];
  repeated double double_data = 8 [packed = true];
  repeated double double_diff = 9 [packed = true];
  optional Type raw_data_type = 10;
  optional bytes raw_data = 12;
  optional int32 num = 1 [default = 0];
  optional int32 channels = 2 [default = 0];
  optional int32 height = 3 [default = 0];
  optional int32 width = 4 [default = 0];
}

message FillerParameter {
  enum VarianceNorm { FAN_IN = 0; FAN_OUT = 1; AVERAGE = 2; }
  optional string type = 1 [default = "constant"];
  optional float value = 2 [default = 0];
  optional float min = 3 [default = 0];
  optional float max = 4 [default = 1];
  optional float mean = 5 [default = 0];
  optional float std = 6 [default = 1];
  optional int32 sparse = 7 [default = -1];
  optional VarianceNorm variance_norm = 8 [default = FAN_IN];
}

message NetParameter {
  optional string name = 1;
  repeated string input = 3;
  repeated BlobShape input_shape = 8;
  repeated int32 input_dim = 4;
  optional bool force_backward = 5 [default = false];
  optional NetState state = 6;
  optional bool debug_info = 7 [default = false];
  repeated LayerParameter layer = 100;
  repeated V1LayerParameter layers = 2;
}

message NetState {
  optional Phase phase = 1 [default = TEST];
  optional int32 level = 2 [default = 0];
  repeated string stage = 3;
}

message NetStateRule {
  optional Phase phase = 1;
  optional int32 min_level = 2;
  optional int32 max_level = 3;
  repeated string stage = 4;
  repeated string not_stage = 5;
}

message ParamSpec {
  enum DimCheckMode { STRICT = 0; PERMISSIVE = 1; }
  optional string name = 1;
  optional DimCheckMode share_mode = 2;
  optional float lr_mult = 3 [default = 1.0];
  optional float decay_mult = 4 [default = 1.0];
}

message LayerParameter {
  optional string name = 1;
  optional string type = 2;
  repeated string bottom = 3;
  repeated string top = 4;
  optional Phase phase = 10;
  repeated float loss_weight = 5;
  repeated ParamSpec param = 6;
  repeated BlobProto blobs = 7;
  repeated bool propagate_down = 11;
  repeated NetStateRule include = 8;
  repeated NetStateRule exclude = 9;
  optional TransformationParameter transform_param = 100;
  optional BatchNormParameter batch_norm_param = 139;
  optional ConcatParameter concat_param = 104;
  optional ConvolutionParameter convolution_param = 106;
  optional DropoutParameter dropout_param = 108;
  optional EltwiseParameter eltwise_param = 110;
  optional FlattenParameter flatten_param = 135;
  optional InputParameter input_param = 143;
  optional PoolingParameter pooling_param = 121;
  optional ReLUParameter relu_param = 123;
  optional ReshapeParameter reshape_param = 133;
  optional ScaleParameter scale_param = 142;
  optional SoftmaxParameter softmax_param = 125;
  // Wei Liu's SSD fork.
  optional PermuteParameter permute_param = 202;
  optional PriorBoxParameter prior_box_param = 203;
  optional DetectionOutputParameter detection_output_param = 204;
  optional NormalizeParameter norm_param = 206;
}

message TransformationParameter {
  optional float scale = 1 [default = 1];
  optional bool mirror = 2 [default = false];
  optional uint32 crop_size = 3 [default = 0];
  optional string mean_file = 4;
  repeated float mean_value = 5;
  optional bool force_color = 6 [default = false];
  optional bool force_gray = 7 [default = false];
}

message BatchNormParameter {
  optional bool use_global_stats = 1;
  optional float moving_average_fraction = 2 [default = 0.999];
  optional float eps = 3 [default = 1e-5];
}

message ConcatParameter {
  optional int32 axis = 2 [default = 1];
  optional uint32 concat_dim = 1 [default = 1];
}

message ConvolutionParameter {
  enum Engine { DEFAULT = 0; CAFFE = 1; CUDNN = 2; }
  optional uint32 num_output = 1;
  optional bool bias_term = 2 [default = true];
  repeated uint32 pad = 3;
  repeated uint32 kernel_size = 4;
  repeated uint32 stride = 6;
  repeated uint32 dilation = 18;
  optional uint32 pad_h = 9 [default = 0];
  optional uint32 pad_w = 10 [default = 0];
  optional uint32 kernel_h = 11;
  optional uint32 kernel_w = 12;
  optional uint32 stride_h = 13;
  optional uint32 stride_w = 14;
  optional uint32 group = 5 [default = 1];
  optional FillerParameter weight_filler = 7;
  optional FillerParameter bias_filler = 8;
  optional Engine engine = 15 [default = DEFAULT];
  optional int32 axis = 16 [default = 1];
  optional bool force_nd_im2col = 17 [default = false];
}

message DropoutParameter {
  optional float dropout_ratio = 1 [default = 0.5];
}

message EltwiseParameter {
  enum EltwiseOp { PROD = 0; SUM = 1; MAX = 2; }
  optional EltwiseOp operation = 1 [default = SUM];
  repeated float coeff = 2;
  optional bool stable_prod_grad = 3 [default = true];
}

message FlattenParameter {
  optional int32 axis = 1 [default = 1];
  optional int32 end_axis = 2 [default = -1];
}

message InputParameter {
  repeated BlobShape shape = 1;
}

message PoolingParameter {
  enum PoolMethod { MAX = 0; AVE = 1; STOCHASTIC = 2; }
  enum Engine { DEFAULT = 0; CAFFE = 1; CUDNN = 2; }
  enum RoundMode { CEIL = 0; FLOOR = 1; }
  optional PoolMethod pool = 1 [default = MAX];
  optional uint32 pad = 4 [default = 0];
  optional uint32 pad_h = 9 [default = 0];
  optional uint32 pad_w = 10 [default = 0];
  optional uint32 kernel_size = 2;
  optional uint32 kernel_h = 5;
  optional uint32 kernel_w = 6;
  optional uint32 stride = 3 [default = 1];
  optional uint32 stride_h = 7;
  optional uint32 stride_w = 8;
  optional Engine engine = 11 [default = DEFAULT];
  optional bool global_pooling = 12 [default = false];
  optional RoundMode round_mode = 13 [default = CEIL];
}

message ReLUParameter {
  enum Engine { DEFAULT = 0; CAFFE = 1; CUDNN = 2; }
  optional float negative_slope = 1 [default = 0];
  optional Engine engine = 2 [default = DEFAULT];
}

message ReshapeParameter {
  optional BlobShape shape = 1;
  optional int32 axis = 2 [default = 0];
  optional int32 num_axes = 3 [default = -1];
}

message ScaleParameter {
  optional int32 axis = 1 [default = 1];
  optional int32 num_axes = 2 [default = 1];
  optional FillerParameter filler = 3;
  optional bool bias_term = 4 [default = false];
  optional FillerParameter bias_filler = 5;
}

message SoftmaxParameter {
  enum Engine { DEFAULT = 0; CAFFE = 1; CUDNN = 2; }
  optional Engine engine = 1 [default = DEFAULT];
  optional int32 axis = 2 [default = 1];
}

message PermuteParameter {
  repeated uint32 order = 1;
}

message PriorBoxParameter {
  enum CodeType { CORNER = 1; CENTER_SIZE = 2; CORNER_SIZE = 3; }
  repeated float min_size = 1;
  repeated float max_size = 2;
  repeated float aspect_ratio = 3;
  optional bool flip = 4 [default = true];
  optional bool clip = 5 [default = false];
  repeated float variance = 6;
  optional uint32 img_size = 7;
  optional uint32 img_h = 8;
  optional uint32 img_w = 9;
  optional float step = 10;
  optional float step_h = 11;
  optional float step_w = 12;
  optional float offset = 13 [default = 0.5];
}

message NonMaximumSuppressionParameter {
  optional float nms_threshold = 1 [default = 0.3];
  optional int32 top_k = 2;
  optional float eta = 3 [default = 1.0];
}

message DetectionOutputParameter {
  optional uint32 num_classes = 1;
  optional bool share_location = 2 [default = true];
  optional int32 background_label_id = 3 [default = 0];
  optional NonMaximumSuppressionParameter nms_param = 4;
  optional PriorBoxParameter.CodeType code_type = 6 [default = CORNER];
  optional bool variance_encoded_in_target = 8 [default = false];
  optional int32 keep_top_k = 7 [default = -1];
  optional float confidence_threshold = 9;
  optional bool visualize = 10 [default = false];
  optional float visualize_threshold = 11;
  optional string save_file = 12;
}

// The SSD fork's label map (data/coco/labelmap_coco.prototxt): name (COCO's category id for COCO),
// label (the model's class index), display_name (the class name).
message LabelMapItem {
  optional string name = 1;
  optional int32 label = 2;
  optional string display_name = 3;
}

message LabelMap {
  repeated LabelMapItem item = 1;
}

message NormalizeParameter {
  optional bool across_spatial = 1 [default = true];
  optional FillerParameter scale_filler = 2;
  optional bool channel_shared = 3 [default = true];
  optional float eps = 4 [default = 1e-10];
}

// The old (pre-2015) layer format: the type is an enum, parameters are numbered differently.
message V1LayerParameter {
  enum LayerType {
    NONE = 0; ABSVAL = 35; ACCURACY = 1; ARGMAX = 30; BNLL = 2; CONCAT = 3; CONTRASTIVE_LOSS = 37;
    CONVOLUTION = 4; DATA = 5; DECONVOLUTION = 39; DROPOUT = 6; DUMMY_DATA = 32; EUCLIDEAN_LOSS = 7;
    ELTWISE = 25; EXP = 38; FLATTEN = 8; HDF5_DATA = 9; HDF5_OUTPUT = 10; HINGE_LOSS = 28; IM2COL = 11;
    IMAGE_DATA = 12; INFOGAIN_LOSS = 13; INNER_PRODUCT = 14; LRN = 15; MEMORY_DATA = 29;
    MULTINOMIAL_LOGISTIC_LOSS = 16; MVN = 34; POOLING = 17; POWER = 26; RELU = 18; SIGMOID = 19;
    SIGMOID_CROSS_ENTROPY_LOSS = 27; SILENCE = 36; SOFTMAX = 20; SOFTMAX_LOSS = 21; SPLIT = 22;
    SLICE = 33; TANH = 23; WINDOW_DATA = 24; THRESHOLD = 31;
  }
  repeated string bottom = 2;
  repeated string top = 3;
  optional string name = 4;
  repeated NetStateRule include = 32;
  repeated NetStateRule exclude = 33;
  optional LayerType type = 5;
  repeated BlobProto blobs = 6;
  repeated string param = 1001;
  repeated float blobs_lr = 7;
  repeated float weight_decay = 8;
  repeated float loss_weight = 35;
  optional ConcatParameter concat_param = 9;
  optional ConvolutionParameter convolution_param = 10;
  optional DropoutParameter dropout_param = 12;
  optional EltwiseParameter eltwise_param = 24;
  optional PoolingParameter pooling_param = 19;
  optional ReLUParameter relu_param = 30;
  optional SoftmaxParameter softmax_param = 39;
  optional TransformationParameter transform_param = 36;
}
"""

_SCALARS = {
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}
_LABELS = {"optional": descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
           "repeated": descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED}
_FIELD = re.compile(r"(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*(?:\[([^\]]*)\])?\s*;")
_ENUM = re.compile(r"enum\s+(\w+)\s*\{([^}]*)\}")
_MESSAGE = re.compile(r"message\s+(\w+)\s*\{")


def _enum_proto(name, body):
    enum = descriptor_pb2.EnumDescriptorProto(name=name)
    for item in body.split(";"):
        if item.strip():
            key, value = (s.strip() for s in item.split("="))
            enum.value.add(name=key, number=int(value))
    return enum


def _file_proto(schema):
    """Parses the proto2 subset used above (top-level messages with nested enums) into a FileDescriptorProto."""
    text = re.sub(r"//[^\n]*", "", schema)
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe_converter/caffe.proto", package=PACKAGE,
                                             syntax="proto2")
    messages, enums = {}, set()
    pos = 0
    while True:
        m_enum, m_msg = _ENUM.search(text, pos), _MESSAGE.search(text, pos)
        if m_msg and (not m_enum or m_msg.start() < m_enum.start()):
            end = text.index("\n}", m_msg.end())
            body = text[m_msg.end():end]
            msg = fdp.message_type.add(name=m_msg.group(1))
            for e in _ENUM.finditer(body):
                msg.enum_type.append(_enum_proto(*e.groups()))
                enums.add(f"{m_msg.group(1)}.{e.group(1)}")
            messages[m_msg.group(1)] = (msg, _ENUM.sub("", body))
            pos = end + 2
        elif m_enum:
            fdp.enum_type.append(_enum_proto(*m_enum.groups()))
            enums.add(m_enum.group(1))
            pos = m_enum.end()
        else:
            break
    for msg_name, (msg, body) in messages.items():
        for label, type_name, name, number, options in _FIELD.findall(body):
            field = msg.field.add(name=name, number=int(number), label=_LABELS[label])
            if type_name in _SCALARS:
                field.type = _SCALARS[type_name]
            else:
                nested = f"{msg_name}.{type_name}"
                full = nested if nested in enums else type_name
                field.type = (descriptor_pb2.FieldDescriptorProto.TYPE_ENUM if full in enums
                              else descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE)
                field.type_name = f".{PACKAGE}.{full}"
            for option in filter(None, (o.strip() for o in options.split(","))):
                key, value = (s.strip() for s in option.split("=", 1))
                if key == "default":
                    field.default_value = value.strip('"')
                elif key == "packed":
                    field.options.packed = value == "true"
    return fdp


_POOL = descriptor_pool.DescriptorPool()  # private: never clashes with another copy of caffe.proto
_POOL.Add(_file_proto(_SCHEMA))


def _message_class(name):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


BlobShape = _message_class("BlobShape")
BlobProto = _message_class("BlobProto")
NetParameter = _message_class("NetParameter")
LayerParameter = _message_class("LayerParameter")
V1LayerParameter = _message_class("V1LayerParameter")
PriorBoxParameter = _message_class("PriorBoxParameter")
DetectionOutputParameter = _message_class("DetectionOutputParameter")
NormalizeParameter = _message_class("NormalizeParameter")
LabelMap = _message_class("LabelMap")
DESCRIPTOR_POOL = _POOL
