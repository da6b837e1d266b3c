#!/usr/bin/env python3
"""Converts the Keras 3 Xception pneumonia classifier of `pneumonia-model-package==0.3.0` to
ONNX without TensorFlow: only `h5py`, `numpy` and `onnx` (onnx.helper).

    keras_xception_to_onnx.py MODEL.keras OUT.onnx [--degraded OUT_DEGRADED.onnx]

Each `.onnx` gets its augur metadata beside it (`OUT.onnx` -> `OUT.json`: NHWC 150x150x3,
nearest resize, x/127.5 - 1, logits [NORMAL, PNEUMONIA], positive index 1), so
`augur score --model OUT.onnx` and `augur model-server --model OUT.onnx` load it as is.

A `.keras` file is a zip holding `config.json` (the functional graph: layers and the tensors
that connect them) and `model.weights.h5` (the variables). The layer graph is read from the
config; the variables from the HDF5 file, where Keras 3 stores each layer's variables under
`layers/<key>/vars/0..n`. The key is NOT the layer's name: it is the snake_case class name
with a per-container counter, in the container's layer order (`conv2d`, `conv2d_1`, ...;
a nested model's layers live under its own key, e.g. `layers/functional/layers/...`). Every
variable's shape is checked against the layer's config, so a wrong mapping fails loudly.

Supported layers (all the Xception head needs): InputLayer, Functional (nested), Conv2D,
SeparableConv2D (a depthwise Conv with group=C, then a 1x1 Conv), BatchNormalization,
Activation ('relu' or 'linear'), Add, MaxPooling2D, GlobalAveragePooling2D, Dense, and
Dropout (the identity at inference). Anything else is an error.

TensorFlow's 'same' padding is asymmetric: out = ceil(in / stride), and the total padding
max((out - 1) * stride + kernel - in, 0) is split with the extra pixel at the END (bottom,
right). The spatial size is fixed (150x150), so explicit `pads` are computed per layer.

The ONNX graph takes `input` float32 [N, 150, 150, 3] (NHWC, the Keras layout; N dynamic),
transposes it once to NCHW, and returns `logits` float32 [N, 2] ([NORMAL, PNEUMONIA]; softmax
gives the probabilities). Opset 17, IR version 8. Preprocessing (nearest resize to 150x150,
x/127.5 - 1) is NOT in the graph: the model's metadata JSON describes it, and augur applies it.

`--degraded` also writes a deliberately worse copy for canary demos: identical except that
the final Dense kernel gets deterministic noise, kernel + s * std(kernel) * u, with u uniform
in [-1, 1] from the 32-bit LCG of `inference/fixtures/generate.py` (seed and s below), so the
file does not depend on numpy's RNG.
"""
import argparse
import io
import json
import re
import sys
import zipfile

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
DEGRADE_SEED = 20240524
DEGRADE_SCALE = 8.0
# The package trains with `flow_from_dataframe`, whose classes are sorted: NORMAL, PNEUMONIA.
LABELS = ["NORMAL", "PNEUMONIA"]


class ConversionError(Exception):
    """The model uses something this converter does not handle, or its weights do not fit."""


class Lcg:
    """Numerical Recipes LCG, as in inference/fixtures/generate.py: uniform floats in [-1, 1)."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFF

    def uniform(self, n):
        out = np.empty(n, dtype=np.float32)
        for i in range(n):
            self.state = (1664525 * self.state + 1013904223) & 0xFFFFFFFF
            out[i] = np.float32((self.state >> 8) / 16777216.0 * 2.0 - 1.0)
        return out


def to_snake_case(name):
    """Keras' `naming.to_snake_case`: `SeparableConv2D` -> `separable_conv2d`."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def same_pads(size, kernel, stride):
    """TensorFlow 'same': (output size, pad before, pad after) for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def valid_size(size, kernel, stride):
    """Output size of a 'valid' (unpadded) window."""
    if size < kernel:
        raise ConversionError(f"a {kernel}-wide valid window does not fit in {size} pixels")
    return (size - kernel) // stride + 1


def inbound_layers(layer):
    """The names of the layers feeding `layer` (its single call's tensor arguments)."""
    nodes = layer.get("inbound_nodes", [])
    if len(nodes) > 1:
        raise ConversionError(f"layer {layer['name']} is called more than once (shared layer)")
    found = []

    def collect(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            name, node_index, tensor_index = value["config"]["keras_history"]
            if node_index != 0 or tensor_index != 0:
                raise ConversionError(f"layer {layer['name']}: multi-output inputs unsupported")
            found.append(name)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)

    for node in nodes:
        collect(node.get("args", []))
        collect(node.get("kwargs", {}))
    return found


def endpoint_names(spec):
    """`input_layers`/`output_layers`: `[name, 0, 0]` or a list of them."""
    if spec and isinstance(spec[0], str):
        spec = [spec]
    return [entry[0] for entry in spec]


class Converter:
    """Emits ONNX nodes and initializers while walking a Keras functional config."""

    def __init__(self, dense_transform=None):
        self.nodes = []
        self.initializers = []
        self.shapes = {}  # tensor -> (C, H, W) for feature maps, (F,) for vectors
        self.counter = 0
        self.dense_transform = dense_transform

    def fresh(self, base):
        self.counter += 1
        return f"{base}__{self.counter}"

    def constant(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def node(self, op, inputs, name, shape, **attrs):
        out = self.fresh(name)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.shapes[out] = shape
        return out

    # --- the graph walk ---

    def model(self, config, group, inputs):
        """Emits a functional model's layers; `inputs` are the tensors bound to its inputs."""
        cfg = config["config"]
        input_names = endpoint_names(cfg["input_layers"])
        if len(input_names) != len(inputs):
            raise ConversionError(f"model {cfg['name']} takes {len(input_names)} inputs")
        counters = {}
        tensors = {}
        for layer in cfg["layers"]:
            key = to_snake_case(layer["class_name"])
            counters[key] = counters.get(key, -1) + 1
            if counters[key]:
                key = f"{key}_{counters[key]}"
            if layer["class_name"] == "InputLayer":
                tensors[layer["name"]] = inputs[input_names.index(layer["name"])]
                continue
            sources = [tensors[name] for name in inbound_layers(layer)]
            weights = group.get(f"layers/{key}")
            tensors[layer["name"]] = self.layer(layer, weights, sources)
        return [tensors[name] for name in endpoint_names(cfg["output_layers"])]

    def layer(self, layer, group, sources):
        kind, cfg, name = layer["class_name"], layer.get("config", {}), layer["name"]
        handler = {
            "Functional": self.functional,
            "Conv2D": self.conv2d,
            "SeparableConv2D": self.separable_conv2d,
            "BatchNormalization": self.batch_norm,
            "Activation": self.activation_layer,
            "Add": self.add,
            "MaxPooling2D": self.max_pool,
            "GlobalAveragePooling2D": self.global_avg_pool,
            "Dense": self.dense,
            "Dropout": self.dropout,
        }.get(kind)
        if handler is None:
            raise ConversionError(f"layer {name}: {kind} is not supported")
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise ConversionError(f"layer {name}: only channels_last is supported")
        return handler(layer, cfg, group, sources)

    def variables(self, group, name, shapes):
        """The layer's variables `vars/0..n`, each checked against its expected shape."""
        if group is None:
            raise ConversionError(f"layer {name}: no weights in model.weights.h5")
        found = group["vars"]
        if len(found) != len(shapes):
            raise ConversionError(f"layer {name}: {len(found)} variables, expected {len(shapes)}")
        out = []
        for i, shape in enumerate(shapes):
            value = np.asarray(found[str(i)], dtype=np.float32)
            if tuple(value.shape) != tuple(shape):
                raise ConversionError(f"layer {name}: vars/{i} has shape {value.shape}, expected {shape}")
            out.append(value)
        return out

    @staticmethod
    def one(sources, name):
        if len(sources) != 1:
            raise ConversionError(f"layer {name}: expected one input, got {len(sources)}")
        return sources[0]

    def functional(self, layer, cfg, group, sources):
        if group is None:
            raise ConversionError(f"nested model {layer['name']}: no weights group")
        outputs = self.model(layer, group, sources)
        if len(outputs) != 1:
            raise ConversionError(f"nested model {layer['name']}: one output expected")
        return outputs[0]

    def window(self, cfg, name, shape, kernel, strides, padding):
        """Output (H, W) and ONNX pads for a 2-D window over a (C, H, W) map."""
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
            raise ConversionError(f"layer {name}: dilation is not supported")
        _, h, w = shape
        if padding == "valid":
            return (valid_size(h, kernel[0], strides[0]), valid_size(w, kernel[1], strides[1])), [0, 0, 0, 0]
        if padding != "same":
            raise ConversionError(f"layer {name}: padding {padding!r} is not supported")
        oh, top, bottom = same_pads(h, kernel[0], strides[0])
        ow, left, right = same_pads(w, kernel[1], strides[1])
        return (oh, ow), [top, left, bottom, right]

    def conv(self, x, weight, bias, strides, pads, group, name, out_hw):
        inputs = [x, self.constant(self.fresh(f"{name}/kernel"), weight)]
        if bias is not None:
            inputs.append(self.constant(self.fresh(f"{name}/bias"), bias))
        return self.node(
            "Conv", inputs, name, (weight.shape[0], *out_hw),
            kernel_shape=list(weight.shape[2:]), strides=list(strides), pads=pads, group=group,
        )

    def conv2d(self, layer, cfg, group, sources):
        name, x = layer["name"], self.one(sources, layer["name"])
        if cfg.get("groups", 1) != 1:
            raise ConversionError(f"layer {name}: grouped Conv2D is not supported")
        cin = self.shapes[x][0]
        kh, kw = cfg["kernel_size"]
        shapes = [(kh, kw, cin, cfg["filters"])] + ([(cfg["filters"],)] if cfg["use_bias"] else [])
        values = self.variables(group, name, shapes)
        out_hw, pads = self.window(cfg, name, self.shapes[x], (kh, kw), cfg["strides"], cfg["padding"])
        weight = values[0].transpose(3, 2, 0, 1)  # (kh, kw, cin, cout) -> (cout, cin, kh, kw)
        y = self.conv(x, weight, values[1] if cfg["use_bias"] else None, cfg["strides"], pads, 1, name, out_hw)
        return self.activation(y, cfg.get("activation", "linear"), name)

    def separable_conv2d(self, layer, cfg, group, sources):
        name, x = layer["name"], self.one(sources, layer["name"])
        cin = self.shapes[x][0]
        kh, kw = cfg["kernel_size"]
        dm, cout = cfg["depth_multiplier"], cfg["filters"]
        shapes = [(kh, kw, cin, dm), (1, 1, cin * dm, cout)] + ([(cout,)] if cfg["use_bias"] else [])
        values = self.variables(group, name, shapes)
        out_hw, pads = self.window(cfg, name, self.shapes[x], (kh, kw), cfg["strides"], cfg["padding"])
        # Depthwise output channel c * dm + m reads input channel c: (cin, dm, kh, kw) in order.
        depthwise = values[0].transpose(2, 3, 0, 1).reshape(cin * dm, 1, kh, kw)
        y = self.conv(x, depthwise, None, cfg["strides"], pads, cin, f"{name}/depthwise", out_hw)
        pointwise = values[1].transpose(3, 2, 0, 1)
        y = self.conv(y, pointwise, values[2] if cfg["use_bias"] else None, (1, 1), [0, 0, 0, 0], 1,
                      f"{name}/pointwise", out_hw)
        return self.activation(y, cfg.get("activation", "linear"), name)

    def batch_norm(self, layer, cfg, group, sources):
        name, x = layer["name"], self.one(sources, layer["name"])
        shape = self.shapes[x]
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if axis not in (-1, len(shape)):  # the channels of an NHWC tensor (3 for maps, 1 for vectors)
            raise ConversionError(f"layer {name}: BatchNormalization on axis {axis} is not supported")
        c = shape[0]
        scale, center = cfg.get("scale", True), cfg.get("center", True)
        values = self.variables(group, name, [(c,)] * (2 + int(scale) + int(center)))
        gamma = values.pop(0) if scale else np.ones(c, np.float32)
        beta = values.pop(0) if center else np.zeros(c, np.float32)
        mean, variance = values
        inputs = [x] + [self.constant(self.fresh(f"{name}/{p}"), v)
                        for p, v in (("gamma", gamma), ("beta", beta), ("mean", mean), ("variance", variance))]
        return self.node("BatchNormalization", inputs, name, shape, epsilon=float(cfg["epsilon"]))

    def activation(self, x, kind, name):
        if kind == "linear":
            return x
        if kind == "relu":
            return self.node("Relu", [x], f"{name}/relu", self.shapes[x])
        raise ConversionError(f"layer {name}: activation {kind!r} is not supported")

    def activation_layer(self, layer, cfg, group, sources):
        return self.activation(self.one(sources, layer["name"]), cfg["activation"], layer["name"])

    def add(self, layer, cfg, group, sources):
        name = layer["name"]
        if len(sources) < 2 or len({self.shapes[s] for s in sources}) != 1:
            raise ConversionError(f"layer {name}: Add needs two or more inputs of one shape")
        y = sources[0]
        for other in sources[1:]:
            y = self.node("Add", [y, other], name, self.shapes[sources[0]])
        return y

    def max_pool(self, layer, cfg, group, sources):
        name, x = layer["name"], self.one(sources, layer["name"])
        pool = cfg["pool_size"]
        strides = cfg.get("strides") or pool
        out_hw, pads = self.window(cfg, name, self.shapes[x], pool, strides, cfg["padding"])
        # ONNX MaxPool ignores padded cells, as TensorFlow's 'same' max pooling does.
        return self.node("MaxPool", [x], name, (self.shapes[x][0], *out_hw),
                         kernel_shape=list(pool), strides=list(strides), pads=pads)

    def global_avg_pool(self, layer, cfg, group, sources):
        name, x = layer["name"], self.one(sources, layer["name"])
        if cfg.get("keepdims", False):
            raise ConversionError(f"layer {name}: keepdims is not supported")
        c = self.shapes[x][0]
        y = self.node("GlobalAveragePool", [x], name, (c, 1, 1))
        return self.node("Flatten", [y], f"{name}/flatten", (c,), axis=1)

    def dense(self, layer, cfg, group, sources):
        name, x = layer["name"], self.one(sources, layer["name"])
        if len(self.shapes[x]) != 1:
            raise ConversionError(f"layer {name}: Dense on a feature map is not supported")
        units = cfg["units"]
        shapes = [(self.shapes[x][0], units)] + ([(units,)] if cfg["use_bias"] else [])
        values = self.variables(group, name, shapes)
        kernel = values[0]
        bias = values[1] if cfg["use_bias"] else np.zeros(units, np.float32)
        if self.dense_transform is not None:
            kernel, bias = self.dense_transform(name, kernel, bias)
        inputs = [x, self.constant(self.fresh(f"{name}/kernel"), kernel), self.constant(self.fresh(f"{name}/bias"), bias)]
        y = self.node("Gemm", inputs, name, (units,))
        return self.activation(y, cfg.get("activation", "linear"), name)

    def dropout(self, layer, cfg, group, sources):
        return self.one(sources, layer["name"])  # the identity at inference


def read_keras(path):
    """(config dict, open h5py.File) of a Keras 3 `.keras` archive."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if not {"config.json", "model.weights.h5"} <= names:
            raise ConversionError(f"{path}: not a Keras 3 archive (has {sorted(names)})")
        config = json.loads(archive.read("config.json"))
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    if config.get("class_name") != "Functional":
        raise ConversionError(f"{path}: top-level {config.get('class_name')} is not a functional model")
    return config, weights


def convert(config, weights, dense_transform=None, doc=""):
    """Builds the ONNX model: `input` [N, H, W, C] NHWC -> `logits` [N, classes]."""
    cfg = config["config"]
    inputs = [layer for layer in cfg["layers"] if layer["class_name"] == "InputLayer"]
    if len(inputs) != 1:
        raise ConversionError("exactly one input layer is supported")
    _, h, w, c = inputs[0]["config"]["batch_shape"]
    conv = Converter(dense_transform)
    nchw = conv.node("Transpose", ["input"], "to_nchw", (c, h, w), perm=[0, 3, 1, 2])
    (out,) = conv.model(config, weights, [nchw])
    if len(conv.shapes[out]) != 1:
        raise ConversionError(f"the model output has shape {conv.shapes[out]}, expected a vector")
    classes = conv.shapes[out][0]
    conv.nodes.append(helper.make_node("Identity", [out], ["logits"], name="logits"))
    graph = helper.make_graph(
        conv.nodes,
        "pneumonia_xception",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", h, w, c])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        conv.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="augur keras_xception_to_onnx.py",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def degrade(seed, scale, target):
    """The `--degraded` transform: noise on the kernel of Dense layer `target` only."""

    def transform(name, kernel, bias):
        if name != target:
            return kernel, bias
        noise = Lcg(seed).uniform(kernel.size).reshape(kernel.shape)
        return (kernel + np.float32(scale) * kernel.std() * noise).astype(np.float32), bias

    return transform


def last_dense(config):
    """The name of the top-level model's last Dense layer (the classifier)."""
    names = [layer["name"] for layer in config["config"]["layers"] if layer["class_name"] == "Dense"]
    if not names:
        raise ConversionError("the model has no Dense layer to degrade")
    return names[-1]


def write_metadata(onnx_path, model, name, version, description):
    """Writes augur's model metadata JSON next to `onnx_path` (`x.onnx` -> `x.json`)."""
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    h, w, c = dims
    meta = {
        "name": name,
        "description": description,
        "model_version": version,
        "input": {"name": "input", "layout": "NHWC", "channels": c, "width": w, "height": h,
                  "resize": "nearest", "normalization": "x/127.5-1"},
        "output": {"name": "logits", "kind": "logits", "labels": LABELS, "positive_index": 1},
    }
    path = re.sub(r"\.onnx$", "", onnx_path) + ".json"
    with open(path, "w", encoding="utf-8") as out:
        json.dump(meta, out, indent=1, sort_keys=True)
        out.write("\n")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("keras", help="the .keras archive")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--degraded", help="also write the degraded variant here")
    parser.add_argument("--degrade-seed", type=int, default=DEGRADE_SEED)
    parser.add_argument("--degrade-scale", type=float, default=DEGRADE_SCALE)
    args = parser.parse_args()
    try:
        config, weights = read_keras(args.keras)
        with weights:
            source = "pneumonia-model-package==0.3.0 (no licence declared: do not redistribute)"
            model = convert(config, weights, doc=f"Converted from {source}.")
            onnx.save(model, args.output)
            meta = write_metadata(args.output, model, "pneumonia-xception", "v1",
                                  f"Keras Xception pneumonia classifier of {source}; not a medical device.")
            print(f"wrote {args.output} ({len(model.graph.node)} nodes) and {meta}")
            if args.degraded:
                target = last_dense(config)
                transform = degrade(args.degrade_seed, args.degrade_scale, target)
                doc = (f"DEGRADED demo variant of {source}: layer {target} kernel + "
                       f"{args.degrade_scale} * std * LCG({args.degrade_seed}) uniform[-1, 1] noise.")
                degraded = convert(config, weights, transform, doc)
                onnx.save(degraded, args.degraded)
                meta = write_metadata(args.degraded, degraded, "pneumonia-xception-degraded", "v2", doc)
                print(f"wrote {args.degraded} and {meta}: {doc}")
    except ConversionError as e:
        sys.exit(f"keras_xception_to_onnx: {e}")


if __name__ == "__main__":
    main()
