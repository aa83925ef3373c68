"""fairseq's self-attention, made to hand a reduction the evidence it needs.

``ReducibleAttention`` is installed by changing the class of fairseq's own
instances (as ToMe patches timm), so every setting of the original is kept.
While ``collecting(evidence)`` is active around its layer it computes attention
explicitly and hands the evidence blocks of fp32 probabilities or the keys;
otherwise it is fairseq's module, fast path included.
"""
import contextlib
import contextvars
from typing import Optional

import torch
from fairseq.modules import MultiheadAttention

from ..reduction import AttentionEvidence

# The evidence the running layer's attention fills; set only around one layer call.
_EVIDENCE: contextvars.ContextVar[Optional[AttentionEvidence]] = contextvars.ContextVar(
    "token_reduction_evidence", default=None)


@contextlib.contextmanager
def collecting(evidence: Optional[AttentionEvidence]):
    """Make the attention inside this block fill ``evidence`` (None: fast path)."""
    token = _EVIDENCE.set(evidence)
    try:
        yield evidence
    finally:
        _EVIDENCE.reset(token)


class ReducibleAttention(MultiheadAttention):
    """fairseq's self-attention, plus: when an ``AttentionEvidence`` is being
    collected, attention is computed explicitly (the probabilities are needed
    anyway) with the softmax in fp32 whatever the input dtype, and each block
    of probabilities or the keys go to the evidence. Changed from fairseq:
    ``forward`` only; no state of its own."""

    # On the CPU the whole B x H x T x T map at once is memory-bound (at 10 s
    # x 8 it took 2.4x as long as fused attention, blocks of ~2 MB 1.3x), so
    # the map is built block by block. CUDA takes it in one go.
    cpu_block_bytes = 2 << 20

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, **kwargs):
        evidence = _EVIDENCE.get()
        if evidence is None:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask,
                                   need_weights=need_weights, attn_mask=attn_mask, **kwargs)
        tgt_len, bsz, embed_dim = query.shape
        heads, head_dim = self.num_heads, self.head_dim

        def split_heads(t):  # T x B x C -> B x H x T x d
            return t.reshape(tgt_len, bsz, heads, head_dim).permute(1, 2, 0, 3)

        q = split_heads(self.q_proj(query) * self.scaling)
        k = split_heads(self.k_proj(key))
        v = split_heads(self.v_proj(value))
        if evidence.needs_keys:
            evidence.add_keys(k)
        key_bias = None  # B x 1 x 1 x T fp32, added to the fp32 logits
        if evidence.key_log_size is not None:
            key_bias = evidence.key_log_size[:, None, None, :].float()
        if key_padding_mask is not None:
            pad = torch.zeros(bsz, 1, 1, tgt_len, device=q.device).masked_fill_(
                key_padding_mask[:, None, None, :].bool(), float("-inf"))
            key_bias = pad if key_bias is None else key_bias + pad
        rows_per_block, heads_per_block = self._block_shape(bsz, tgt_len, q.device)
        outputs = []
        for r in range(0, bsz, rows_per_block):
            rows = slice(r, min(r + rows_per_block, bsz))
            row_outputs = []
            for h in range(0, heads, heads_per_block):
                block = (rows, slice(h, min(h + heads_per_block, heads)))
                logits = torch.matmul(q[block], k[block].transpose(-1, -2))
                # in place: matmul's backward needs q and k, not its output
                if attn_mask is not None:
                    logits += attn_mask
                logits = logits.float()  # in place below too: a copy unless already fp32
                if key_bias is not None:
                    logits += key_bias[rows]
                probs = logits.softmax(dim=-1)
                if evidence.needs_probabilities:
                    evidence.add_probabilities(probs, rows, heads, key_padding_mask)
                row_outputs.append(
                    torch.matmul(self.dropout_module(probs.type_as(v)), v[block]))
            outputs.append(torch.cat(row_outputs, dim=1) if len(row_outputs) > 1
                           else row_outputs[0])
        out = torch.cat(outputs, dim=0) if len(outputs) > 1 else outputs[0]  # B x H x T x d
        out = out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, embed_dim)
        return self.out_proj(out), None

    def _block_shape(self, bsz: int, length: int, device: torch.device):
        """(batch rows, heads) per block of the attention map."""
        if device.type != "cpu":
            return bsz, self.num_heads
        per_head = max(1, self.cpu_block_bytes // (4 * length * length))
        if per_head >= self.num_heads:
            return max(1, per_head // self.num_heads), self.num_heads
        return 1, per_head


def attention_padding_mask(padding_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The key mask the attention sees: a row with no valid frame (a caller's
    empty utterance) attends to its filler, so its states stay finite; its
    output stays fully masked."""
    if padding_mask is None:
        return None
    return padding_mask & (~padding_mask).any(dim=1, keepdim=True)
