#!/usr/bin/env python3
"""Independent numpy reference forward pass for GGUF models of arch `llama`.

It shares no code with the C engine: tensors are read with the PyPI `gguf`
package's GGUFReader and dequantized with gguf.quants.dequantize (both from
the llama.cpp project), and the maths below is written from the Llama
definition:

    h   = token_embd[tok]
    per layer:
        x    = rmsnorm(h) * attn_norm
        q,k,v = Wq x, Wk x, Wv x            (n_head / n_head_kv heads, GQA)
        q,k  = rope(q), rope(k)              "normal" (adjacent-pair) layout
        a    = softmax(q k^T / sqrt(d_head) + causal mask) v
        h   += Wo a
        x    = rmsnorm(h) * ffn_norm
        h   += Wdown (silu(Wgate x) * (Wup x))
    logits = Wout (rmsnorm(h) * output_norm)  (Wout = token_embd if tied)

RoPE layout: llama.cpp's converter permutes the Q/K rows of HF checkpoints so
that a GGUF rotates adjacent pairs (x[2i], x[2i+1]) by pos * base^(-2i/d).

Arithmetic is float64 by default (float32 with --f32).  Two optional
"emulation" switches reproduce what a llama.cpp-style engine does on purpose,
so that the size of the engine-vs-reference difference can be calibrated
honestly rather than guessed (see ref_check.py):
    act_q8  - round matmul inputs to 8-bit blocks of 32 (Q8_0/Q8_1 style:
              d = amax/127, q = round(x/d)) as quantized dot kernels do:
              "decode" for single-token steps only, "all" for every
              position; q8_scale picks an fp16 (ggml) or float32 scale;
    kv_f16  - store K/V (and round Q) to float16, as llama.cpp's default
              F16 KV cache does.
Speed: SmolLM2-135M loads (dequantizes) in ~4 s; a prompt plus 64 greedy
tokens takes 2-5 s, a teacher-forced score() of the same about 1 s.

Usage as a program (token ids in, ids/text out):
    ref_forward.py -m MODEL --ids 1,2,3 -n 64 [--show-text] [--dump-logits F]
"""

import argparse
import sys
import time

import numpy as np

try:
    import gguf
    from gguf.quants import dequantize
except ImportError:  # pragma: no cover - reported by the caller
    gguf = None


# Token texts llama.cpp treats as end-of-generation in addition to the ids
# named in the metadata (src/llama-vocab.cpp).  `--ignore-eos` in llama.cpp
# sets their logits to -inf; the reference does the same.
EOG_TEXTS = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>",
}


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


class Vocab:
    """Just what the checks need from the file's tokenizer: special ids, the
    end-of-generation set and detokenization (for display and sanity
    checks; the reference never tokenizes - it takes ids)."""

    def __init__(self, reader):
        r = reader
        self.tokens = _field(r, "tokenizer.ggml.tokens", [])
        self.types = _field(r, "tokenizer.ggml.token_type", [])
        self.model = _field(r, "tokenizer.ggml.model", "llama")
        self.add_bos = bool(_field(r, "tokenizer.ggml.add_bos_token",
                                   self.model == "llama"))
        self.bos_id = _field(r, "tokenizer.ggml.bos_token_id")
        self.eos_id = _field(r, "tokenizer.ggml.eos_token_id")
        self.eot_id = _field(r, "tokenizer.ggml.eot_token_id")

    def eog_ids(self):
        ids = {i for i in (self.eos_id, self.eot_id) if i is not None}
        ids |= {i for i, s in enumerate(self.tokens) if s in EOG_TEXTS}
        return sorted(ids)

    def detokenize(self, ids, special=True):
        """Text of ids; special=False drops control tokens (type 3) the way
        llama.cpp prints them by default.  Invalid UTF-8 becomes U+FFFD."""
        bs = bytearray()
        inv = _byte_decoder() if self.model == "gpt2" else None
        for i in ids:
            if not special and i < len(self.types) and self.types[i] == 3:
                continue
            s = self.tokens[i]
            if inv is not None:
                for ch in s:
                    if ch in inv:
                        bs.append(inv[ch])
                    else:
                        bs += ch.encode("utf-8")
            elif len(s) == 6 and s.startswith("<0x") and s.endswith(">"):
                bs.append(int(s[3:5], 16))
            else:
                bs += s.replace("\u2581", " ").encode("utf-8")
        return bs.decode("utf-8", errors="replace")


def load_vocab(path):
    if gguf is None:
        raise RuntimeError("python package 'gguf' is not installed")
    return Vocab(gguf.GGUFReader(path))


class RefModel:
    """A llama-architecture model with an incremental KV cache.

    Weights are dequantized once at load into (n_out, n_in) arrays.
    forward(tokens) appends len(tokens) positions to the cache and returns
    their logits, shape (len(tokens), n_vocab).
    """

    def __init__(self, path, dtype=np.float64, act_q8=None, kv_f16=False,
                 max_ctx=4096, q8_scale="f16"):
        if gguf is None:
            raise RuntimeError("python package 'gguf' is not installed")
        self.dtype = dtype
        if act_q8 not in (None, False, "decode", "all", True):
            raise ValueError("act_q8 must be None, 'decode' or 'all'")
        # "all": every matmul input; "decode": only single-token steps
        # (an engine that prefills with float GEMM and decodes with Q8 dots)
        self.act_q8 = "all" if act_q8 is True else (act_q8 or None)
        self.kv_f16 = kv_f16
        self.q8_scale = q8_scale
        r = gguf.GGUFReader(path)
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise ValueError(f"{path}: architecture '{arch}', expected 'llama'")
        p = "llama."
        self.n_layer = int(_field(r, p + "block_count"))
        self.n_embd = int(_field(r, p + "embedding_length"))
        self.n_ff = int(_field(r, p + "feed_forward_length"))
        self.n_head = int(_field(r, p + "attention.head_count"))
        self.n_head_kv = int(_field(r, p + "attention.head_count_kv",
                                    self.n_head))
        self.eps = float(_field(r, p + "attention.layer_norm_rms_epsilon"))
        self.rope_base = float(_field(r, p + "rope.freq_base", 10000.0))
        self.d_head = self.n_embd // self.n_head
        self.n_rot = int(_field(r, p + "rope.dimension_count", self.d_head))
        if _field(r, p + "rope.scaling.type") not in (None, "none"):
            raise ValueError(f"{path}: RoPE scaling is not supported here")

        names = {t.name for t in r.tensors}
        if "rope_freqs.weight" in names:
            raise ValueError(f"{path}: per-dimension RoPE factors "
                             "(rope_freqs) are not supported here")
        self.vocab = Vocab(r)

        w = {}
        for t in r.tensors:
            a = np.asarray(dequantize(t.data, t.tensor_type))
            # GGUF lists dims fastest-first; numpy wants (rows, cols).
            shape = tuple(int(d) for d in reversed(t.shape))
            w[t.name] = a.reshape(shape).astype(dtype)
        self.w = w
        self.tok_embd = w["token_embd.weight"]          # (n_vocab, n_embd)
        self.out = w.get("output.weight", self.tok_embd)  # tied if absent
        self.n_vocab = self.out.shape[0]

        # RoPE frequencies for adjacent pairs: theta_i = base^(-2i/n_rot)
        i = np.arange(0, self.n_rot, 2, dtype=np.float64)
        self.inv_freq = self.rope_base ** (-i / self.n_rot)
        self.max_ctx = max_ctx
        self.reset()

    # -- state -------------------------------------------------------------
    def reset(self):
        kvt = np.float16 if self.kv_f16 else self.dtype
        shape = (self.n_layer, self.max_ctx, self.n_head_kv, self.d_head)
        self.k = np.zeros(shape, dtype=kvt)
        self.v = np.zeros(shape, dtype=kvt)
        self.n_past = 0

    def eog_ids(self):
        return self.vocab.eog_ids()

    def detokenize(self, ids, special=True):
        return self.vocab.detokenize(ids, special)

    # -- ops ---------------------------------------------------------------
    def _rmsnorm(self, x, wt):
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return x / np.sqrt(ms + self.eps) * wt

    def _q8(self, x):
        """Round rows of x to 8-bit blocks of 32 like ggml's quantize_row_q8:
        d = amax/127, q = round(x * (1/d)) half away from zero, in float32.
        The scale is kept as float16 (ggml's Q8_0/Q8_1) or float32
        (q8_scale="f32", a format that stores a float scale).  Rounding
        errors are a deterministic function of d, so emulating an engine
        closely needs its exact scale format."""
        n, d = x.shape
        b = x.reshape(n, d // 32, 32).astype(np.float32)
        amax = np.max(np.abs(b), axis=-1, keepdims=True)
        dd = (amax / np.float32(127.0)).astype(np.float32)
        with np.errstate(divide="ignore"):
            inv = np.where(dd > 0, np.float32(1.0) / dd, np.float32(0.0))
        y = b * inv.astype(np.float32)
        q = np.clip(np.sign(y) * np.floor(np.abs(y) + np.float32(0.5)),
                    -127, 127)
        if self.q8_scale == "f16":
            dd = dd.astype(np.float16).astype(np.float32)
        return (q * dd).reshape(n, d).astype(self.dtype)

    def _mm(self, x, wt):
        """x (n, n_in) times wt^T (n_out, n_in) -> (n, n_out)."""
        if self._q8_now:
            x = self._q8(x)
        return x @ wt.T

    def _rope(self, x, pos):
        """x (n, heads, d_head) rotated in place-free adjacent pairs."""
        ang = np.outer(pos, self.inv_freq)              # (n, n_rot/2)
        c = np.cos(ang)[:, None, :].astype(self.dtype)
        s = np.sin(ang)[:, None, :].astype(self.dtype)
        y = x.copy()
        x0 = x[..., 0:self.n_rot:2]
        x1 = x[..., 1:self.n_rot:2]
        y[..., 0:self.n_rot:2] = x0 * c - x1 * s
        y[..., 1:self.n_rot:2] = x0 * s + x1 * c
        return y

    # -- forward -----------------------------------------------------------
    def forward(self, toks, act_q8=None):
        """Evaluate toks at positions n_past.. and return their logits.
        act_q8 overrides the model's activation-rounding mode for this call
        (True/False); None applies the mode ('decode' rounds only n == 1)."""
        n = len(toks)
        if act_q8 is None:
            act_q8 = self.act_q8 == "all" or (self.act_q8 == "decode"
                                               and n == 1)
        self._q8_now = bool(act_q8)
        p0 = self.n_past
        if p0 + n > self.max_ctx:
            raise ValueError("context full")
        pos = np.arange(p0, p0 + n)
        nh, nkv, dh = self.n_head, self.n_head_kv, self.d_head
        grp = nh // nkv
        scale = 1.0 / np.sqrt(dh)
        # causal mask over the whole cached span: query i sees keys <= p0+i
        kpos = np.arange(p0 + n)
        mask = np.where(kpos[None, :] <= pos[:, None], 0.0, -np.inf)

        h = self.tok_embd[np.asarray(toks)].astype(self.dtype)   # (n, n_embd)
        for L in range(self.n_layer):
            W = lambda s: self.w[f"blk.{L}.{s}.weight"]
            x = self._rmsnorm(h, W("attn_norm"))
            q = self._mm(x, W("attn_q")).reshape(n, nh, dh)
            k = self._mm(x, W("attn_k")).reshape(n, nkv, dh)
            v = self._mm(x, W("attn_v")).reshape(n, nkv, dh)
            q = self._rope(q, pos)
            k = self._rope(k, pos)
            self.k[L, p0:p0 + n] = k
            self.v[L, p0:p0 + n] = v
            K = self.k[L, :p0 + n].astype(self.dtype)      # (T, nkv, dh)
            V = self.v[L, :p0 + n].astype(self.dtype)
            if self.kv_f16:
                q = q.astype(np.float16).astype(self.dtype)
            # GQA: query head hh reads KV head hh // grp
            qg = q.reshape(n, nkv, grp, dh)
            s = np.einsum("nhgd,thd->hgnt", qg, K)       # (nkv, grp, n, T)
            s = s * scale + mask
            s = s - s.max(axis=-1, keepdims=True)
            e = np.exp(s)
            pr = e / e.sum(axis=-1, keepdims=True)
            a = np.einsum("hgnt,thd->nhgd", pr, V).reshape(n, nh * dh)
            h = h + self._mm(a, W("attn_output"))
            x = self._rmsnorm(h, W("ffn_norm"))
            g = self._mm(x, W("ffn_gate"))
            u = self._mm(x, W("ffn_up"))
            act = g / (1.0 + np.exp(-g)) * u
            h = h + self._mm(act, W("ffn_down"))
        self.n_past += n
        x = self._rmsnorm(h, self.w["output_norm.weight"])
        return self._mm(x, self.out)

    # -- generation --------------------------------------------------------
    def greedy(self, prompt, n_predict, ignore_eos=True):
        """Greedy decode n_predict tokens after prompt (ids, BOS included if
        wanted).  Returns (generated ids, logits (len(prompt)+n_predict-1,
        n_vocab) as float32, top-2 margins of each pick)."""
        self.reset()
        eog = self.eog_ids() if ignore_eos else []
        rows = []
        out, margins = [], []
        lg = self.forward(prompt)
        rows.append(lg.astype(np.float32))
        last = lg[-1].copy()
        for i in range(n_predict):
            sel = last.copy()
            if eog:
                sel[eog] = -np.inf
            t = int(np.argmax(sel))
            top2 = np.partition(sel, -2)[-2:]
            margins.append(float(top2[1] - top2[0]))
            out.append(t)
            if not ignore_eos and t in self.eog_ids():
                break
            if i + 1 < n_predict:
                lg = self.forward([t])
                rows.append(lg.astype(np.float32))
                last = lg[-1]
        return out, np.concatenate(rows, axis=0), margins

    def score(self, prompt, generated):
        """Teacher-forced: evaluate prompt as one batch, then generated[:-1]
        as decode positions (batched - each row is computed exactly as a
        single step would be, rounding included).  Returns logits
        (len(prompt) + len(generated) - 1, n_vocab) as float32; row
        len(prompt)-1+i is the distribution generated[i] was chosen from."""
        self.reset()
        rows = [self.forward(prompt)]
        if len(generated) > 1:
            q8 = self.act_q8 in ("all", "decode")
            rows.append(self.forward(list(generated[:-1]), act_q8=q8))
        return np.concatenate(rows, axis=0).astype(np.float32)

    def perplexity(self, ids, n_ctx):
        """Perplexity the way llama.cpp's llama-perplexity computes it:
        n_chunk = len(ids) // n_ctx windows, each evaluated from an empty
        cache with its first token replaced by BOS if the vocab adds BOS;
        only the second half of each window is scored (positions
        n_ctx/2 .. n_ctx-2 predicting the next token).  Returns (ppl,
        [running ppl after each chunk]) - the values llama.cpp prints as
        [1]x,[2]y,..."""
        n_chunk = len(ids) // n_ctx
        first = n_ctx // 2
        nll, count, running = 0.0, 0, []
        for c in range(n_chunk):
            toks = list(ids[c * n_ctx:(c + 1) * n_ctx])
            if self.vocab.add_bos:
                toks[0] = self.vocab.bos_id
            self.reset()
            lg = self.forward(toks).astype(np.float64)[first:n_ctx - 1]
            tgt = np.asarray(ids[c * n_ctx + first + 1:(c + 1) * n_ctx])
            mx = lg.max(axis=1)
            lse = mx + np.log(np.exp(lg - mx[:, None]).sum(axis=1))
            nll += float(np.sum(lse - lg[np.arange(len(tgt)), tgt]))
            count += len(tgt)
            running.append(float(np.exp(nll / count)))
        return (running[-1] if running else float("nan")), running


def _byte_decoder():
    """Inverse of GPT-2's bytes_to_unicode table."""
    bs = (list(range(ord("!"), ord("~") + 1))
          + list(range(ord("\u00a1"), ord("\u00ac") + 1))
          + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--ids", required=True,
                    help="comma-separated prompt token ids (BOS included)")
    ap.add_argument("-n", "--n-predict", type=int, default=64)
    ap.add_argument("--f32", action="store_true", help="float32 arithmetic")
    ap.add_argument("--act-q8", choices=["decode", "all"],
                    help="round matmul inputs to 8-bit blocks")
    ap.add_argument("--kv-f16", action="store_true")
    ap.add_argument("--no-ignore-eos", action="store_true")
    ap.add_argument("--show-text", action="store_true")
    ap.add_argument("--dump-logits", metavar="FILE")
    a = ap.parse_args()
    t0 = time.time()
    m = RefModel(a.model, np.float32 if a.f32 else np.float64,
                 a.act_q8, a.kv_f16)
    t1 = time.time()
    prompt = [int(x) for x in a.ids.replace(" ", "").strip("[]").split(",")
              if x]
    ids, logits, margins = m.greedy(prompt, a.n_predict,
                                    not a.no_ignore_eos)
    t2 = time.time()
    print("[" + ", ".join(str(i) for i in ids) + "]")
    if a.show_text:
        print(m.detokenize(prompt) + "|" + m.detokenize(ids))
    if a.dump_logits:
        logits.astype("<f4").tofile(a.dump_logits)
    print(f"load {t1 - t0:.1f}s, {len(prompt)}+{len(ids)} tokens "
          f"{t2 - t1:.1f}s, min top-2 margin {min(margins):.4f}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
