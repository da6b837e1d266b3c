#!/usr/bin/env python3
"""Self-test of keras_xception_to_onnx.py without the real model and without TensorFlow.

    .cache/model-venv/bin/python inference/convert/test_keras_xception_to_onnx.py

(`scripts/fetch-model.sh` creates that venv: h5py, numpy, onnx.) It writes a small synthetic
Keras 3 archive that uses every supported layer (a nested functional model, stride-2 'same'
Conv2D and MaxPooling2D on even sizes, so TensorFlow's asymmetric padding matters,
SeparableConv2D with a depth multiplier, BatchNormalization, Add, GlobalAveragePooling2D,
Dense, Dropout), with random weights in Keras 3's HDF5 layout, converts it, runs the ONNX
graph with onnx's reference evaluator, and compares it with a direct numpy implementation of
the Keras layers (NHWC, explicit TF padding). The real model is checked end to end by
`cargo test -p augur-inference --test real_model -- --ignored`.
"""
import io
import json
import os
import sys
import tempfile
import unittest
import zipfile

import h5py
import numpy as np
from onnx.reference import ReferenceEvaluator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras_xception_to_onnx as conv  # noqa: E402

RNG = np.random.default_rng(7)


def tensor(name):
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}


def layer(kind, name, inputs, **config):
    nodes = [{"args": [[tensor(i) for i in inputs]] if kind == "Add" else [tensor(inputs[0])],
              "kwargs": {}}] if inputs else []
    return {"class_name": kind, "name": name, "config": {"name": name, **config}, "inbound_nodes": nodes}


def tf_pad(x, kernel, stride, value=0.0):
    """Pads an NHWC array as TensorFlow's 'same' does (the extra pixel at the end)."""
    pads = [(0, 0)]
    for axis, (k, s) in enumerate(zip(kernel, stride)):
        size = x.shape[1 + axis]
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)], constant_values=value)


def windows(x, kernel, stride):
    """[N, OH, OW, kh, kw, C] sliding windows of an already padded NHWC array."""
    kh, kw = kernel
    oh = (x.shape[1] - kh) // stride[0] + 1
    ow = (x.shape[2] - kw) // stride[1] + 1
    out = np.empty((x.shape[0], oh, ow, kh, kw, x.shape[3]), x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = x[:, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
    return out


def ref_conv(x, k, stride, padding):
    if padding == "same":
        x = tf_pad(x, k.shape[:2], stride)
    return np.einsum("nijabc,abcd->nijd", windows(x, k.shape[:2], stride), k)


def ref_depthwise(x, k, stride):
    w = windows(tf_pad(x, k.shape[:2], stride), k.shape[:2], stride)
    out = np.einsum("nijabc,abcm->nijcm", w, k)  # channel c, multiplier m -> c * dm + m
    return out.reshape(*out.shape[:3], -1)


def ref_maxpool(x, pool, stride):
    return windows(tf_pad(x, pool, stride, -np.inf), pool, stride).max(axis=(3, 4))


def ref_bn(x, gamma, beta, mean, var, eps):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


class SyntheticModel:
    """A tiny Xception-like Keras 3 archive and the numpy forward pass it should compute."""

    def __init__(self):
        r = lambda *shape: RNG.normal(0, 0.5, shape).astype(np.float32)  # noqa: E731
        self.w = {
            "conv2d": [r(3, 3, 3, 4)],
            "batch_normalization": [r(4) + 1, r(4), r(4), np.abs(r(4)) + 0.5],
            "separable_conv2d": [r(3, 3, 4, 2), r(1, 1, 8, 6), r(6)],
            "conv2d_1": [r(1, 1, 4, 6)],
            "dense": [r(6, 5), r(5)],
            "dense_1": [r(5, 2), r(2)],
        }
        inner = [
            layer("InputLayer", "inner_in", [], batch_shape=[None, 12, 12, 3]),
            layer("Conv2D", "stem", ["inner_in"], filters=4, kernel_size=[3, 3], strides=[2, 2],
                  padding="same", use_bias=False, activation="linear", groups=1,
                  data_format="channels_last", dilation_rate=[1, 1]),
            layer("BatchNormalization", "stem_bn", ["stem"], axis=-1, epsilon=1e-3, center=True, scale=True),
            layer("Activation", "stem_act", ["stem_bn"], activation="relu"),
            layer("SeparableConv2D", "sep", ["stem_act"], filters=6, kernel_size=[3, 3], strides=[1, 1],
                  padding="same", depth_multiplier=2, use_bias=True, activation="relu",
                  data_format="channels_last", dilation_rate=[1, 1]),
            layer("MaxPooling2D", "pool", ["sep"], pool_size=[3, 3], strides=[2, 2], padding="same",
                  data_format="channels_last"),
            layer("Conv2D", "residual", ["stem_act"], filters=6, kernel_size=[1, 1], strides=[2, 2],
                  padding="same", use_bias=False, activation="linear", groups=1,
                  data_format="channels_last", dilation_rate=[1, 1]),
            layer("Add", "add", ["pool", "residual"]),
        ]
        nested = layer("Functional", "backbone", ["outer_in"], layers=inner,
                       input_layers=[["inner_in", 0, 0]], output_layers=[["add", 0, 0]])
        outer = [
            layer("InputLayer", "outer_in", [], batch_shape=[None, 12, 12, 3]),
            nested,
            layer("GlobalAveragePooling2D", "gap", ["backbone"], data_format="channels_last"),
            layer("Dense", "hidden", ["gap"], units=5, use_bias=True, activation="relu"),
            layer("Dropout", "drop", ["hidden"], rate=0.3),
            layer("Dense", "head", ["drop"], units=2, use_bias=True, activation="linear"),
        ]
        self.config = {"class_name": "Functional", "config": {
            "name": "synthetic", "layers": outer,
            "input_layers": [["outer_in", 0, 0]], "output_layers": [["head", 0, 0]]}}

    def write(self, path):
        weights = io.BytesIO()
        with h5py.File(weights, "w") as f:
            for key, values in self.w.items():
                prefix = "layers" if key.startswith("dense") else "layers/functional/layers"
                for i, v in enumerate(values):
                    f[f"{prefix}/{key}/vars/{i}"] = v
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", json.dumps(self.config))
            z.writestr("metadata.json", "{}")
            z.writestr("model.weights.h5", weights.getvalue())

    def forward(self, x, head=None):
        w = self.w
        y = ref_conv(x, w["conv2d"][0], (2, 2), "same")                     # 12 -> 6, pads (0, 1)
        g, b, m, v = w["batch_normalization"]
        stem = np.maximum(ref_bn(y, g, b, m, v, 1e-3), 0)
        dw, pw, bias = w["separable_conv2d"]
        sep = np.maximum(ref_conv(ref_depthwise(stem, dw, (1, 1)), pw, (1, 1), "valid") + bias, 0)
        pooled = ref_maxpool(sep, (3, 3), (2, 2))                              # 6 -> 3, pads (0, 1)
        residual = ref_conv(stem, w["conv2d_1"][0], (2, 2), "same")
        features = (pooled + residual).mean(axis=(1, 2))
        hidden = np.maximum(features @ w["dense"][0] + w["dense"][1], 0)
        kernel, bias = head if head is not None else w["dense_1"]
        return hidden @ kernel + bias


class ConverterTest(unittest.TestCase):
    def setUp(self):
        self.model = SyntheticModel()
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "synthetic.keras")
        self.model.write(self.path)
        self.x = RNG.uniform(-1, 1, (3, 12, 12, 3)).astype(np.float32)

    def tearDown(self):
        self.dir.cleanup()

    def run_onnx(self, model):
        return ReferenceEvaluator(model).run(None, {"input": self.x})[0]

    def test_same_padding_puts_the_extra_pixel_at_the_end(self):
        self.assertEqual(conv.same_pads(72, 3, 2), (36, 0, 1))
        self.assertEqual(conv.same_pads(9, 3, 2), (5, 1, 1))
        self.assertEqual(conv.same_pads(150, 3, 1), (150, 1, 1))
        self.assertEqual(conv.same_pads(9, 1, 2), (5, 0, 0))

    def test_snake_case_matches_keras_weight_keys(self):
        self.assertEqual(conv.to_snake_case("SeparableConv2D"), "separable_conv2d")
        self.assertEqual(conv.to_snake_case("GlobalAveragePooling2D"), "global_average_pooling2d")
        self.assertEqual(conv.to_snake_case("BatchNormalization"), "batch_normalization")

    def test_conversion_matches_the_keras_layers(self):
        config, weights = conv.read_keras(self.path)
        with weights:
            model = conv.convert(config, weights)
        self.assertEqual([i.name for i in model.graph.input], ["input"])
        self.assertEqual([o.name for o in model.graph.output], ["logits"])
        got = self.run_onnx(model)
        np.testing.assert_allclose(got, self.model.forward(self.x), rtol=1e-4, atol=1e-5)

    def test_degraded_changes_only_the_target_dense_and_is_deterministic(self):
        config, weights = conv.read_keras(self.path)
        target = conv.last_dense(config)
        self.assertEqual(target, "head")
        transform = conv.degrade(5, 2.0, target)
        with weights:
            first = self.run_onnx(conv.convert(config, weights, transform))
            second = self.run_onnx(conv.convert(config, weights, transform))
        np.testing.assert_array_equal(first, second)
        kernel, bias = self.model.w["dense_1"]
        noise = conv.Lcg(5).uniform(kernel.size).reshape(kernel.shape)
        noisy = (kernel + np.float32(2.0) * kernel.std() * noise, bias)
        np.testing.assert_allclose(first, self.model.forward(self.x, noisy), rtol=1e-4, atol=1e-5)
        self.assertGreater(np.abs(first - self.model.forward(self.x)).max(), 1e-3)

    def test_a_weight_of_the_wrong_shape_is_an_error(self):
        self.model.w["conv2d_1"] = [np.zeros((1, 1, 4, 7), np.float32)]
        self.model.write(self.path)
        config, weights = conv.read_keras(self.path)
        with weights, self.assertRaisesRegex(conv.ConversionError, "residual: vars/0 has shape"):
            conv.convert(config, weights)

    def test_an_unsupported_layer_is_an_error(self):
        self.model.config["config"]["layers"][2]["class_name"] = "LayerNormalization"
        self.model.write(self.path)
        config, weights = conv.read_keras(self.path)
        with weights, self.assertRaisesRegex(conv.ConversionError, "LayerNormalization is not supported"):
            conv.convert(config, weights)

    def test_metadata_describes_the_xception_recipe(self):
        config, weights = conv.read_keras(self.path)
        with weights:
            model = conv.convert(config, weights)
        path = conv.write_metadata(os.path.join(self.dir.name, "m.onnx"), model, "m", "v1", "test")
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        self.assertEqual(path, os.path.join(self.dir.name, "m.json"))
        self.assertEqual(meta["input"], {"name": "input", "layout": "NHWC", "channels": 3, "width": 12,
                                         "height": 12, "resize": "nearest", "normalization": "x/127.5-1"})
        self.assertEqual(meta["output"]["labels"], ["NORMAL", "PNEUMONIA"])
        self.assertEqual(meta["output"]["positive_index"], 1)


if __name__ == "__main__":
    unittest.main()
