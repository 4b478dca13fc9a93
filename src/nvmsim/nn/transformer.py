"""Transformer encoder layers whose every product goes through their children.

``nn.TransformerEncoderLayer`` has an inference fast path (``torch._transformer_encoder_
layer_fwd``) that reads its attention's and linears' weights directly, so analog children
would be bypassed. :func:`nvmsim.convert` converts the children (attention, ``linear1``,
``linear2``) and turns the layer into an :class:`AnalogTransformerEncoderLayer`: the same
children, attributes and ``state_dict`` keys, and torch's own non-fast forward, which calls
them. It is not an ``nn.TransformerEncoderLayer``, so ``nn.TransformerEncoder`` does not turn
its input into nested tensors for it, and a converted ``nn.TransformerEncoder`` is told not to
(:func:`without_nested_tensors`). (``nn.TransformerDecoderLayer`` has no fast path: its
children convert in place.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AnalogTransformerEncoderLayer(nn.Module):
    """An ``nn.TransformerEncoderLayer`` whose forward always calls its children (made by
    :meth:`adopt`, never constructed directly)."""

    _sa_block = nn.TransformerEncoderLayer._sa_block
    _ff_block = nn.TransformerEncoderLayer._ff_block

    @classmethod
    def adopt(cls, layer: nn.TransformerEncoderLayer) -> AnalogTransformerEncoderLayer:
        """``layer`` itself, re-classed (its children and attributes are kept as they are)."""
        layer.__class__ = cls
        return layer  # type: ignore[return-value]

    def forward(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        src_key_padding_mask = F._canonical_mask(
            mask=src_key_padding_mask, mask_name="src_key_padding_mask",
            other_type=F._none_or_dtype(src_mask), other_name="src_mask",
            target_type=src.dtype,
        )  # fmt: skip
        src_mask = F._canonical_mask(
            mask=src_mask, mask_name="src_mask", other_type=None, other_name="",
            target_type=src.dtype, check_other=False,
        )  # fmt: skip
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))


def without_nested_tensors(encoder: nn.TransformerEncoder) -> nn.TransformerEncoder:
    """``encoder`` with its nested-tensor fast path off (it would hand analog layers nested
    tensors for inputs with a padding mask); the result is the same, padded."""
    encoder.use_nested_tensor = False
    return encoder
