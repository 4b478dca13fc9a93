"""``AnalogMultiheadAttention``: ``nn.MultiheadAttention`` with its projections on crossbars.

The query, key and value projections (slices of ``in_proj_weight``, or ``q/k/v_proj_weight``
when ``kdim`` / ``vdim`` differ) and ``out_proj`` are each a programmed matrix
(:class:`OwnedMatrix`), read once per token. The two products of activations with activations,
``Q K^T`` and the attention weights times ``V``, cannot sit on a programmed crossbar: they
stay digital (torch's own kernel, with every mask, dropout and ``bias_k`` / ``add_zero_attn``
option, on the projected inputs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nvmsim.config import AnalogConfig
from nvmsim.crossbar.converters import calibrated_range, quantize_symmetric
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
        quantized = self.config.converter.attention_products == "quantized"
        if quantized and (self.bias_k is not None or self.add_zero_attn):
            raise ValueError(
                "attention_products = 'quantized' does not take add_bias_kv or add_zero_attn"
            )
        if quantized or (not need_weights and self.bias_k is None and not self.add_zero_attn):
            out, w = self._attend(q, k, v, key_padding_mask, attn_mask, is_causal, batched,
                                  need_weights, average_attn_weights)  # fmt: skip
            return self._project("out", out), w
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

    def _attend(self, q, k, v, key_padding_mask, attn_mask, is_causal: bool, batched: bool,
                need_weights: bool = False, average: bool = True):  # fmt: skip
        """``softmax(Q K^T / sqrt(d) + masks) V`` per head on the projected tokens in their own
        layout: what ``F.multi_head_attention_forward`` computes (its masks, merged the same
        way), less its identity projections. Digital products run torch's fused kernel;
        quantised ones go through the converters (:meth:`_quantized_products`)."""
        seq_dim = 1 if self.batch_first or not batched else 0
        if not batched:
            q, k, v = (t.unsqueeze(0) for t in (q, k, v))
        elif not self.batch_first:
            q, k, v = (t.transpose(0, 1) for t in (q, k, v))
        b, n_q, n_k, h = q.shape[0], q.shape[1], k.shape[1], self.num_heads
        if not batched and key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
        key_padding_mask = F._canonical_mask(
            mask=key_padding_mask, mask_name="key_padding_mask",
            other_type=F._none_or_dtype(attn_mask), other_name="attn_mask", target_type=q.dtype,
        )  # fmt: skip
        if is_causal and attn_mask is None:
            raise RuntimeError("is_causal needs attn_mask, as in nn.MultiheadAttention")
        quantized = self.config.converter.attention_products == "quantized"
        if is_causal and key_padding_mask is None and not need_weights and not quantized:
            mask = None
        else:
            is_causal = False
            mask = F._canonical_mask(
                mask=attn_mask, mask_name="attn_mask", other_type=None, other_name="",
                target_type=q.dtype, check_other=False,
            )  # fmt: skip
            if mask is not None:
                want = (n_q, n_k) if mask.dim() == 2 else (b * h, n_q, n_k)
                if tuple(mask.shape) != want:
                    raise RuntimeError(f"attn_mask has shape {tuple(mask.shape)}, expected {want}")
                mask = mask.view(1, 1, n_q, n_k) if mask.dim() == 2 else mask.view(b, h, n_q, n_k)
            if key_padding_mask is not None:
                if tuple(key_padding_mask.shape) != (b, n_k):
                    raise RuntimeError(
                        f"key_padding_mask has shape {tuple(key_padding_mask.shape)}, "
                        f"expected {(b, n_k)}"
                    )
                kpm = key_padding_mask.view(b, 1, 1, n_k)
                mask = kpm if mask is None else mask + kpm
        heads = [t.view(b, t.shape[1], h, -1).transpose(1, 2) for t in (q, k, v)]
        p = self.dropout if self.training else 0.0
        weights = None
        if quantized:
            out, weights = self._quantized_products(*heads, mask, p)
            weights = weights.mean(dim=1) if average else weights
            weights = weights if batched else weights.squeeze(0)
        else:
            out = F.scaled_dot_product_attention(*heads, mask, p, is_causal)  # (B, h, L, hd)
        out = out.transpose(1, 2).reshape(b, n_q, self.embed_dim)
        if not batched:
            out = out.squeeze(0)
        elif seq_dim == 0:
            out = out.transpose(0, 1)
        return out, (weights if need_weights else None)

    def _quantized_products(self, q, k, v, mask, dropout_p: float):
        """``Q K^T`` and ``A V`` as if computed through converters: the operands ``Q``, ``K``,
        ``A``, ``V`` through a ``dac_bits`` DAC and the products through an ``adc_bits`` ADC,
        each over the range that covers it in its sequence and head (bits ``None``: exact).
        Returns the output (B, h, L, hd) and the attention weights (B, h, L, S)."""
        conv = self.config.converter

        def quantize(t: torch.Tensor, bits: int | None) -> torch.Tensor:
            return t if bits is None else quantize_symmetric(t, bits, calibrated_range(t, (-2, -1)))

        def dac(t: torch.Tensor) -> torch.Tensor:
            return quantize(t, conv.dac_bits)

        def adc(t: torch.Tensor) -> torch.Tensor:
            return quantize(t, conv.adc_bits)

        scores = adc(dac(q) @ dac(k).transpose(-2, -1)) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + mask
        a = torch.softmax(scores, dim=-1)
        a = F.dropout(a, dropout_p) if dropout_p > 0 else a
        return adc(dac(a) @ dac(v)), a
