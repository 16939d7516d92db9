#!/usr/bin/env python3
"""fuzz/mkheader.py MODEL OUT [N] - the header of a real GGUF model as a
seed for fuzz/fuzz_header.c: magic, version, every metadata key in file
order and every tensor info byte for byte, the tokenizer's per-token arrays
(tokenizer.ggml.tokens, scores, token_type, merges) cut to their first N
entries (default 512) so the seed stays small; no tensor data. Offsets
in the tensor table are relative to the data section, so they still
describe the real file's layout. Exits 1 if MODEL is not GGUF v2/v3."""
import struct
import sys

SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
CUT = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores",
       "tokenizer.ggml.token_type", "tokenizer.ggml.merges")


def read_value(f, vtype, keep=None):
    """Bytes of one value; an array keeps only its first `keep` elements."""
    if vtype in SCALAR:
        return f.read(SCALAR[vtype])
    if vtype == 8:
        (n,) = struct.unpack("<Q", f.read(8))
        return struct.pack("<Q", n) + f.read(n)
    if vtype == 9:
        etype, n = struct.unpack("<IQ", f.read(12))
        parts = [read_value(f, etype) for _ in range(n)]
        if keep is not None:
            parts = parts[:keep]
        return struct.pack("<IQ", etype, len(parts)) + b"".join(parts)
    sys.exit(f"mkheader: unknown value type {vtype}")


def main():
    src, dst = sys.argv[1], sys.argv[2]
    keep = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    out = []
    with open(src, "rb") as f:
        magic, version, n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
        if magic != b"GGUF" or version not in (2, 3):
            sys.exit(f"mkheader: {src}: not GGUF v2/v3")
        out.append(struct.pack("<4sIQQ", magic, version, n_tensors, n_kv))
        for _ in range(n_kv):
            (klen,) = struct.unpack("<Q", f.read(8))
            key = f.read(klen)
            (vtype,) = struct.unpack("<I", f.read(4))
            val = read_value(f, vtype, keep if key.decode() in CUT else None)
            out.append(struct.pack("<Q", klen) + key +
                       struct.pack("<I", vtype) + val)
        for _ in range(n_tensors):
            (nlen,) = struct.unpack("<Q", f.read(8))
            name = f.read(nlen)
            (nd,) = struct.unpack("<I", f.read(4))
            rest = f.read(8 * nd + 12)
            out.append(struct.pack("<Q", nlen) + name +
                       struct.pack("<I", nd) + rest)
    data = b"".join(out)
    with open(dst, "wb") as f:
        f.write(data + b"\0" * (-len(data) % 32))


if __name__ == "__main__":
    main()
