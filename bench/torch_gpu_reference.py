#!/usr/bin/env python3
"""PyTorch peer on a chosen device (cuda or cpu) for bench/gpu.ts: the same U-Net-lite as
../shared/bench/torch_reference.py (conv3x3+ReLU encoder with stride-2 downsampling, nearest
upsample + skip concat decoder, 1x1 head + sigmoid), MSE against the input, Adam(1e-4), float32
(TF32 off, as ONNX Runtime's float32 kernels), timed with device synchronisation.

Usage: python3 torch_gpu_reference.py --device cuda --size 128 --batch 8 --widths 16,32,64,128 --steps 20
Prints one JSON line: peer, device, train_ms_per_step, train_img_per_s, infer_ms_per_batch, infer_img_per_s.
"""
import argparse
import json
import time

import torch
import torch.nn as nn


def block(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU())


class UNetLite(nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        cin = 3
        for i, w in enumerate(widths):
            self.enc.append(block(cin, w))
            nxt = widths[i + 1] if i + 1 < len(widths) else w
            self.down.append(block(w, nxt, 2))
            cin = nxt
        self.bottleneck = block(cin, cin)
        self.dec = nn.ModuleList()
        for w in reversed(widths):
            self.dec.append(block(cin + w, w))
            cin = w
        self.head = nn.Conv2d(cin, 3, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x):
        skips = []
        for enc, down in zip(self.enc, self.down):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for dec, skip in zip(self.dec, reversed(skips)):
            x = dec(torch.cat([self.up(x), skip], 1))
        return torch.sigmoid(self.head(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--widths", default="16,32,64,128")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    widths = [int(w) for w in a.widths.split(",")]
    model = UNetLite(widths).to(dev)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.rand(a.batch, 3, a.size, a.size, device=dev)

    def step():
        opt.zero_grad()
        loss = ((model(x) - x) ** 2).mean()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    train_ms = (time.perf_counter() - t) / a.steps * 1000
    with torch.no_grad():
        for _ in range(3):
            model(x)
        sync()
        t = time.perf_counter()
        for _ in range(a.steps):
            model(x)
        sync()
        infer_ms = (time.perf_counter() - t) / a.steps * 1000
    print(json.dumps({
        "peer": "pytorch-" + torch.__version__,
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "threads": torch.get_num_threads(),
        "size": a.size, "batch": a.batch, "widths": widths,
        "train_ms_per_step": round(train_ms, 2),
        "train_img_per_s": round(a.batch * 1000 / train_ms, 1),
        "infer_ms_per_batch": round(infer_ms, 2),
        "infer_img_per_s": round(a.batch * 1000 / infer_ms, 1),
    }))


if __name__ == "__main__":
    main()
