#!/usr/bin/env python3
"""Malformed copies of a GGUF file for tests/test_cli.sh.
  tests/gguf_patch.py IN OUT KEY VALUE   one scalar metadata value changed
      in place (same type, same size): the tensor table and data stay
      valid while the metadata lies about them (integers and floats only;
      exits 1 if KEY is missing or not a number)
  tests/gguf_patch.py --vocab-only IN OUT   the header and metadata with no
      tensors, as llama.cpp's ggml-vocab-*.gguf files are
  tests/gguf_patch.py --zero-rows IN OUT TENSOR ROW0 N   a copy whose rows
      ROW0 .. ROW0+N-1 of TENSOR are all-zero bytes (every GGUF type,
      scales included, decodes zero bytes as 0.0): a model bug injected
      for tests/ref_check.py (exits 1 if TENSOR is missing or too short)"""
import shutil
import struct
import sys

# GGUF value types: fixed-size scalars by struct code; 8 = string, 9 = array
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?",
          10: "Q", 11: "q", 12: "d"}


def skip_value(f, vtype):
    if vtype in SCALAR:
        f.seek(struct.calcsize("<" + SCALAR[vtype]), 1)
    elif vtype == 8:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(n, 1)
    elif vtype == 9:
        etype, n = struct.unpack("<IQ", f.read(12))
        for _ in range(n):
            skip_value(f, etype)
    else:
        sys.exit(f"gguf_patch: unknown value type {vtype}")


# (elements, bytes) per block by GGUF type number
BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22),
         7: (32, 24), 8: (32, 34), 12: (256, 144), 13: (256, 176),
         14: (256, 210), 30: (1, 2)}


def tensor_table(f):
    """(data start, {name: (type, dims, offset)}) of an open GGUF file."""
    magic, _version, n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
    if magic != b"GGUF":
        sys.exit("gguf_patch: not a GGUF file")
    align = 32
    for _ in range(n_kv):
        (klen,) = struct.unpack("<Q", f.read(8))
        k = f.read(klen).decode()
        (vtype,) = struct.unpack("<I", f.read(4))
        if k == "general.alignment" and vtype == 4:
            (align,) = struct.unpack("<I", f.read(4))
        else:
            skip_value(f, vtype)
    tensors = {}
    for _ in range(n_tensors):
        (nlen,) = struct.unpack("<Q", f.read(8))
        name = f.read(nlen).decode()
        (nd,) = struct.unpack("<I", f.read(4))
        dims = struct.unpack(f"<{nd}Q", f.read(8 * nd))
        ttype, off = struct.unpack("<IQ", f.read(12))
        tensors[name] = (ttype, dims, off)
    return f.tell() + (-f.tell() % align), tensors


def zero_rows(src, dst, name, row0, n):
    with open(src, "rb") as f:
        start, tensors = tensor_table(f)
    if name not in tensors:
        sys.exit(f"gguf_patch: {src}: no tensor {name}")
    ttype, dims, off = tensors[name]
    if ttype not in BLOCK:
        sys.exit(f"gguf_patch: {name}: type {ttype} not in the table")
    blck, size = BLOCK[ttype]
    row_bytes = dims[0] // blck * size
    rows = 1
    for d in dims[1:]:
        rows *= d
    if row0 < 0 or n < 0 or row0 + n > rows:
        sys.exit(f"gguf_patch: {name} has {rows} rows, not {row0 + n}")
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        f.seek(start + off + row0 * row_bytes)
        f.write(b"\0" * (n * row_bytes))


def vocab_only(src, dst):
    with open(src, "rb") as f:
        magic, version, _n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
        for _ in range(n_kv):
            (klen,) = struct.unpack("<Q", f.read(8))
            f.seek(klen, 1)
            (vtype,) = struct.unpack("<I", f.read(4))
            skip_value(f, vtype)
        end = f.tell()
        f.seek(24)
        kv = f.read(end - 24)
    with open(dst, "wb") as f:
        f.write(struct.pack("<4sIQQ", magic, version, 0, n_kv) + kv)
        f.write(b"\0" * (-f.tell() % 32))


def main():
    if sys.argv[1] == "--vocab-only":
        return vocab_only(sys.argv[2], sys.argv[3])
    if sys.argv[1] == "--zero-rows":
        return zero_rows(sys.argv[2], sys.argv[3], sys.argv[4],
                         int(sys.argv[5]), int(sys.argv[6]))
    src, dst, key, value = sys.argv[1:5]
    with open(src, "rb") as f:
        magic, _version, _n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
        if magic != b"GGUF":
            sys.exit(f"gguf_patch: {src}: not a GGUF file")
        for _ in range(n_kv):
            (klen,) = struct.unpack("<Q", f.read(8))
            k = f.read(klen).decode()
            (vtype,) = struct.unpack("<I", f.read(4))
            if k == key:
                if vtype not in SCALAR or vtype == 7:
                    sys.exit(f"gguf_patch: {key} is not a number (type {vtype})")
                at, code = f.tell(), SCALAR[vtype]
                break
            skip_value(f, vtype)
        else:
            sys.exit(f"gguf_patch: {src}: no key {key}")
    v = float(value) if code in "fd" else int(value)
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        f.seek(at)
        f.write(struct.pack("<" + code, v))


if __name__ == "__main__":
    main()
