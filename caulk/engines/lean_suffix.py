"""The suffix after a cached ViT prefix, computing only what the classifier reads.

Exact shortcuts over ``caulk.cache.prefix.run_suffix`` (same outputs and gradients to
floating-point noise, tested against it):

- **class token only in the last block.** A timm VisionTransformer with ``global_pool='token'``
  reads the class token alone after its last block, and every module after that block's
  attention acts on each token separately (LayerNorm, MLP, LoRA, adapters, SSF), so the last
  block needs the queries, attention output, projection and MLP of token 0 only (keys and values
  of every token). On caulk's 17-token ViTs that block costs about a third of the full one.
- **the first block's frozen qkv computed once.** When the first trained block's ``norm1`` is
  frozen and its ``attn.qkv`` is a frozen Linear or a LoRA layer over one, the base projection of
  every cached row is computed once (``first_block_qkv``); each step adds only the low-rank update.
- **LoRA's keys and values never formed at token 0.** With a LoRALinear qkv in the last block,
  token 0's attention reads the frozen keys and values and u = A h (``_token0_lora_mix``).
- **a single trained LoRA block from cached parts.** When that block is the only trained one,
  its normed tokens, frozen query of token 0 and keys and values by head are cached per row
  (``inputs``, ``token0_lora``): a step gathers them and runs no norm1.

The batched_suffix engine trains K points over the same rows for many steps, so the shortcuts
pay there; the per-point engines keep the plain module forward (their oracle in the tests).
"""

from __future__ import annotations

import torch
from timm.layers.attention import Attention
from timm.models.vision_transformer import Block
from torch import nn

from caulk.cache.prefix import PrefixPlan, run_suffix
from caulk.peft.lora import LoRALayer, LoRALinear

#: the largest frozen-qkv cache (bytes) kept for a split; larger splits compute qkv per step
QKV_CACHE_BYTES = 2 * 2**30
#: rows per chunk when computing the frozen qkv of a split
QKV_CHUNK = 512


def _frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


def _plain_attention(block: nn.Module) -> bool:
    attn = getattr(block, "attn", None)
    return type(attn) is Attention and attn.gate is None


def reads_class_token_only(backbone: nn.Module) -> bool:
    """Whether the backbone's head reads token 0 alone after its last block."""
    return getattr(backbone, "attn_pool", None) is None and backbone.global_pool == "token"


def qkv_base(block: nn.Module) -> nn.Linear | None:
    """The frozen Linear whose output on a block's cached input can be computed once, or None:
    ``norm1`` frozen and ``attn.qkv`` a frozen Linear or an unmerged LoRA layer over one."""
    if type(block) is not Block or not _plain_attention(block) or not _frozen(block.norm1):
        return None
    qkv = block.attn.qkv
    if isinstance(qkv, LoRALayer) and not qkv.merged and isinstance(qkv.dropout, nn.Identity):
        qkv = qkv.base
    return qkv if type(qkv) is nn.Linear and _frozen(qkv) else None


class LeanSuffix(nn.Module):
    """``run_suffix(backbone, plan, x)`` with the shortcuts of the module doc where they apply
    (``class_token_only``, ``cached_qkv``); parameter names are the backbone's (``backbone.…``)."""

    def __init__(self, backbone: nn.Module, plan: PrefixPlan):
        super().__init__()
        self.backbone, self.plan = backbone, plan
        blocks = list(backbone.blocks[plan.depth :]) if plan.depth is not None else []
        self.lean = bool(blocks) and all(type(b) is Block for b in blocks)
        self.class_token_only = self.lean and reads_class_token_only(backbone)
        self.cached_qkv = self.lean and qkv_base(blocks[0]) is not None
        # one trained block, read at token 0: it runs from its cached parts (``inputs``)
        self.token0_lora = (
            self.class_token_only
            and self.cached_qkv
            and len(blocks) == 1
            and _lora_algebra(blocks[0].attn)
        )

    @torch.no_grad()
    def first_block_qkv(self, x: torch.Tensor) -> torch.Tensor | None:
        """The first trained block's frozen qkv projection of cached rows ``x`` (N, tokens,
        dim), or None when it does not apply or would exceed ``QKV_CACHE_BYTES``."""
        if not self._qkv_cacheable(x):
            return None
        block = self.backbone.blocks[self.plan.depth]
        return _chunked(lambda rows: qkv_base(block)(block.norm1(rows)), x)

    def _qkv_cacheable(self, x: torch.Tensor) -> bool:
        if not self.cached_qkv:
            return False
        out_features = qkv_base(self.backbone.blocks[self.plan.depth]).out_features
        return x.shape[0] * x.shape[1] * out_features * x.element_size() <= QKV_CACHE_BYTES

    @torch.no_grad()
    def inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What ``forward`` takes for cached rows ``x`` (N, tokens, dim), per row (index them
        to pick rows): ``(x, first_block_qkv)`` or ``(x,)``; with ``token0_lora``, the rows'
        class token, normed tokens and frozen query of token 0, keys and values by head."""
        if not self.token0_lora:
            qkv = self.first_block_qkv(x)
            return (x,) if qkv is None else (x, qkv)
        if not self._qkv_cacheable(x):
            return (x,)
        block = self.backbone.blocks[self.plan.depth]
        h = _chunked(block.norm1, x)  # normed once: the LoRA reads it too
        qkv = _chunked(qkv_base(block), h)
        heads, width = block.attn.num_heads, block.attn.head_dim
        q, k, v = qkv.reshape(*x.shape[:2], 3, heads, width).unbind(2)
        by_head = (k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous())
        return (x[:, 0].contiguous(), h, q[:, 0].contiguous(), *by_head)

    def forward(self, x: torch.Tensor, *cached: torch.Tensor | None) -> torch.Tensor:
        """The backbone's output from the rows' ``inputs`` (or cached rows ``x`` alone, or
        ``x`` and their ``first_block_qkv``)."""
        if not self.lean:
            return run_suffix(self.backbone, self.plan, x)
        if len(cached) == 4:
            x = _token0_lora_block(self.backbone.blocks[self.plan.depth], x, *cached)
            return self.backbone.forward_head(self.backbone.norm(x))
        qkv = cached[0] if cached else None
        blocks = self.backbone.blocks[self.plan.depth :]
        last = len(blocks) - 1
        for i, block in enumerate(blocks):
            x = _block(block, x, self.class_token_only and i == last, qkv if i == 0 else None)
        return self.backbone.forward_head(self.backbone.norm(x))


def _chunked(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(x[i : i + QKV_CHUNK]) for i in range(0, len(x), QKV_CHUNK)])


def _token0_lora_block(block: Block, x0, h, q0, k, v) -> torch.Tensor:
    """A last block with a LoRALinear qkv at token 0, from its ``LeanSuffix.inputs``."""
    attn = block.attn
    u = h @ attn.qkv.lora_A.T
    out = _token0_lora_mix(attn, u, q0, k, v).reshape(len(x0), 1, attn.attn_dim)
    x = x0.unsqueeze(1) + block.drop_path1(block.ls1(attn.proj_drop(attn.proj(attn.norm(out)))))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def _block(block: Block, x: torch.Tensor, class_token_only: bool, qkv) -> torch.Tensor:
    """timm's ``Block.forward``; with ``class_token_only`` its output at token 0 alone."""
    h = block.norm1(x)
    if _plain_attention(block):
        a = _attention(block.attn, h, class_token_only, qkv)
    else:
        a = block.attn(h)[:, :1] if class_token_only else block.attn(h)
    if class_token_only:
        x = x[:, :1]
    x = x + block.drop_path1(block.ls1(a))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def _attention(attn: Attention, h: torch.Tensor, class_token_only: bool, base) -> torch.Tensor:
    """timm's ``Attention.forward`` (unfused, no mask) on normed tokens ``h``; ``base``: the
    qkv Linear's precomputed output, to which a LoRA layer adds its update."""
    if class_token_only and _lora_algebra(attn):
        return attn.proj_drop(attn.proj(attn.norm(_lora_token0_attention(attn, h, base))))
    batch, tokens, _ = h.shape
    if base is None:
        qkv = attn.qkv(h)
    elif isinstance(attn.qkv, LoRALayer):
        qkv = torch.add(base, attn.qkv.update(h, base), alpha=attn.qkv.scaling)
    else:
        qkv = base
    qkv = qkv.reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if class_token_only:
        q = q[:, :, :1]
    weights = attn.attn_drop(((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1))
    out = (weights @ v).transpose(1, 2).reshape(batch, q.shape[2], attn.attn_dim)
    return attn.proj_drop(attn.proj(attn.norm(out)))


def _lora_algebra(attn: Attention) -> bool:
    """Whether token 0's attention can skip forming the LoRA-updated keys and values: ``qkv`` an
    unmerged LoRALinear without dropout, no q/k norm."""
    lora = attn.qkv
    return (
        isinstance(lora, LoRALinear)
        and not lora.merged
        and isinstance(lora.dropout, nn.Identity)
        and isinstance(attn.q_norm, nn.Identity)
        and isinstance(attn.k_norm, nn.Identity)
    )


def _lora_token0_attention(attn: Attention, h: torch.Tensor, base) -> torch.Tensor:
    """Token 0's attention output (batch, 1, attn_dim) before ``attn.norm`` for a LoRALinear qkv
    on normed tokens ``h``; ``base`` the qkv Linear's output on them, or None."""
    batch, tokens, _ = h.shape
    base = attn.qkv.base(h) if base is None else base
    q, k, v = base.reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).unbind(2)
    u = h @ attn.qkv.lora_A.T
    out = _token0_lora_mix(attn, u, q[:, 0], k.transpose(1, 2), v.transpose(1, 2))
    return out.reshape(batch, 1, attn.attn_dim)


def _token0_lora_mix(attn: Attention, u, q0, k, v) -> torch.Tensor:
    """(batch, heads, head_dim) token 0's attention mix without forming the LoRA-updated keys
    and values of every token: with ``u`` = A h (batch, tokens, r), the frozen query ``q0``
    of token 0 (batch, dim) and frozen keys ``k`` and values ``v`` (batch, heads, tokens,
    head_dim), k' = k + s B_k u gives q·k' = q·k + s (B_k^T q)·u, and sum_t w_t v'_t =
    sum_t w_t v_t + s B_v (sum_t w_t u_t): per token rank-r products instead of the
    3·dim-wide update."""
    lora, heads, width = attn.qkv, attn.num_heads, attn.head_dim
    s = lora.scaling
    b_q, b_k, b_v = lora.lora_B.reshape(3, heads, width, -1).unbind(0)  # (heads, width, r)
    q = q0.reshape(len(q0), heads, width) + s * torch.einsum("hdr,br->bhd", b_q, u[:, 0])
    q_on_u = torch.einsum("bhd,hdr->bhr", q, b_k)
    scores = (q.unsqueeze(2) @ k.transpose(-2, -1)).squeeze(2)
    scores = scores + s * torch.einsum("bhr,btr->bht", q_on_u, u)
    weights = attn.attn_drop((scores * attn.scale).softmax(dim=-1))
    u_mix = torch.einsum("bht,btr->bhr", weights, u)
    mixed = (weights.unsqueeze(2) @ v).squeeze(2)
    return mixed + s * torch.einsum("hdr,bhr->bhd", b_v, u_mix)
