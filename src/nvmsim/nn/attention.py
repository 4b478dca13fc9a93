"""``AnalogMultiheadAttention``: ``nn.MultiheadAttention`` with its projections on crossbars.

The query, key and value projections (slices of ``in_proj_weight``, or ``q/k/v_proj_weight``
when ``kdim`` / ``vdim`` differ) and ``out_proj`` are each a programmed matrix
(:class:`OwnedMatrix`), read once per token. The two products of activations with activations,
``Q K^T`` and the attention weights times ``V``, cannot sit on a programmed crossbar: they
stay digital (torch's own kernel, with every mask, dropout and ``bias_k`` / ``add_zero_attn``
option, on the projected inputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.nn.owned import OwnedArrays, OwnedMatrix
from nvmsim.seeds import spawn_seeds


class AnalogMultiheadAttention(OwnedArrays, nn.MultiheadAttention):
    """Same signature, parameters and ``state_dict`` keys as :class:`torch.nn.MultiheadAttention`,
    plus ``config`` and ``seed``; ``arrays`` holds ``q``, ``k``, ``v`` and ``out``."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False, device=None,
                 dtype=None, config: AnalogConfig | None = None,
                 seed: int | None = None) -> None:  # fmt: skip
        nn.MultiheadAttention.__init__(
            self, embed_dim, num_heads, dropout, bias, add_bias_kv, add_zero_attn, kdim, vdim,
            batch_first, device, dtype,
        )  # fmt: skip
        self.config = config or AnalogConfig()
        self.seed = self.config.seed if seed is None else int(seed)
        seeds = iter(spawn_seeds(self.seed, 4))
        e, b = embed_dim, ("in_proj_bias",) if bias else ()
        arrays = {}
        for i, part in enumerate("qkv"):
            rows, cfg = (i * e, (i + 1) * e), self.config
            if self._qkv_same_embed_dim:  # a slice of the packed weight and bias
                arrays[part] = OwnedMatrix(self, "in_proj_weight", b, cfg, next(seeds), rows)
            else:  # its own weight, a slice of the packed bias
                name = f"{part}_proj_weight"
                arrays[part] = OwnedMatrix(self, name, b, cfg, next(seeds), bias_rows=rows)
        out_b = ("out_proj.bias",) if bias else ()
        arrays["out"] = OwnedMatrix(self, "out_proj.weight", out_b, self.config, next(seeds))
        self.arrays = nn.ModuleDict(arrays)
        self.register_buffer("_eye", torch.eye(e, device=device, dtype=dtype), persistent=False)

    @classmethod
    def from_torch(cls, layer: nn.MultiheadAttention, config: AnalogConfig | None = None,
                   seed: int | None = None) -> AnalogMultiheadAttention:  # fmt: skip
        """Analog copy of a torch attention layer (same arguments, weights, device, dtype)."""
        p = layer.out_proj.weight
        new = cls(
            layer.embed_dim, layer.num_heads, layer.dropout, layer.in_proj_bias is not None,
            layer.bias_k is not None, layer.add_zero_attn, layer.kdim, layer.vdim,
            layer.batch_first, p.device, p.dtype, config=config, seed=seed,
        )  # fmt: skip
        new.load_state_dict(layer.state_dict())
        new.train(layer.training)
        return new.program()

    def _project(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """One read per token of ``x`` (any leading dimensions)."""
        y = self.arrays[name](x.reshape(-1, x.shape[-1]))
        return y.reshape(*x.shape[:-1], y.shape[-1])

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):  # fmt: skip
        if query.shape[-1] != self.embed_dim:
            raise ValueError(
                f"AnalogMultiheadAttention expects queries with last dimension "
                f"{self.embed_dim}, got shape {tuple(query.shape)}"
            )
        q, k, v = self._project("q", query), self._project("k", key), self._project("v", value)
        batched = query.dim() == 3
        if self.batch_first and batched:
            q, k, v = (t.transpose(1, 0) for t in (q, k, v))
        eye = self._eye
        out, weights = F.multi_head_attention_forward(
            q, k, v, self.embed_dim, self.num_heads, None, None, self.bias_k, self.bias_v,
            self.add_zero_attn, self.dropout, eye, None, training=self.training,
            key_padding_mask=key_padding_mask, need_weights=need_weights, attn_mask=attn_mask,
            use_separate_proj_weight=True, q_proj_weight=eye, k_proj_weight=eye,
            v_proj_weight=eye, average_attn_weights=average_attn_weights, is_causal=is_causal,
        )  # fmt: skip
        out = self._project("out", out)
        if self.batch_first and batched:
            out = out.transpose(1, 0)
        return out, weights
