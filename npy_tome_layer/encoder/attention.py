"""fairseq's self-attention, made to hand a reduction the evidence it needs.

``ReducibleAttention`` is installed by changing the class of fairseq's own
instances (as ToMe patches timm), so every setting of the original is kept.
While ``collecting(evidence)`` is active around its layer it hands the evidence
the keys, or the fp32 attention probabilities, along one of two paths:

* ``fused``: the output comes from PyTorch's fused attention
  (``scaled_dot_product_attention``, as fairseq's dense layers: flash or
  memory-efficient kernels, O(T) memory, their backward), and the
  probabilities are recomputed for the evidence in a separate ``no_grad``
  pass over blocks of whole query rows, in fp32, never kept;
* ``explicit``: attention is computed by hand in blocks, the probabilities
  serve both the output and the evidence (and are kept for the backward).

``scoring_path(...)`` chooses; ``auto`` (the default) is ``fused`` except for
CPU inference, where the explicit path's single pass over the logits was
measured as fast at base size and faster at the demo's width; in training the
fused path keeps no probabilities for the backward pass (docs/results.md,
"Attention paths of the pruning layers").
"""
import contextlib
import contextvars
from typing import Optional

import torch
import torch.nn.functional as F
from fairseq.modules import MultiheadAttention
from torch.profiler import record_function

from ..reduction import EVIDENCE_LABEL, AttentionEvidence

# The evidence the running layer's attention fills; set only around one layer call.
_EVIDENCE: contextvars.ContextVar[Optional[AttentionEvidence]] = contextvars.ContextVar(
    "token_reduction_evidence", default=None)
SCORING_PATHS = ("auto", "fused", "explicit")
_SCORING_PATH: contextvars.ContextVar[str] = contextvars.ContextVar(
    "token_reduction_scoring_path", default="auto")


@contextlib.contextmanager
def scoring_path(path: str):
    """Attention path of the acting layers inside this block (``SCORING_PATHS``)."""
    if path not in SCORING_PATHS:
        raise ValueError(f"scoring path must be one of {SCORING_PATHS}, got {path!r}")
    token = _SCORING_PATH.set(path)
    try:
        yield
    finally:
        _SCORING_PATH.reset(token)


def chosen_path(device: torch.device, training: bool) -> str:
    """The path ``auto`` takes on this device and mode."""
    path = _SCORING_PATH.get()
    if path != "auto":
        return path
    return "explicit" if device.type == "cpu" and not training else "fused"


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
    cuda_block_bytes = 256 << 20  # the scoring pass's blocks on a GPU
    # Where the fused kernel's log-sum-exp replaces the scoring pass's softmax:
    # device type -> input dtypes. None by default. On the CPU its lse matches
    # an fp32 logsumexp to ~5e-7 for fp32 input (3-6e-5 for half precision: too
    # far for scores equal to the softmax's within 1e-5), but subtracting it
    # and exponentiating took longer than the row-wise softmax kernel (fused
    # path 0.81-0.86x as fast at width 64, 0.93-0.94x at 768, 500 frames x 8,
    # one thread, no_grad); the CUDA path (memory-efficient kernel) has not
    # been measured on a GPU (tests/test_cuda.py checks its scores).
    log_sum_exp_kernels: dict = {}

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

        fused = attn_mask is None and chosen_path(query.device, self.training) == "fused"
        # SDPA scales q itself; the explicit path scales it as fairseq does
        q = split_heads(self.q_proj(query) * (1.0 if fused else self.scaling))
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
        if fused:
            return self._fused(q, k, v, key_bias, key_padding_mask, evidence)
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

    def _fused(self, q, k, v, key_bias, key_padding_mask, evidence):
        """Output from fused attention; probabilities for the evidence from a
        separate no-grad pass: ``exp(logit - lse)`` where the kernel hands
        back each query's log-sum-exp with the output, a softmax otherwise."""
        dropout = self.dropout_module.p if self.training or \
            self.dropout_module.apply_during_inference else 0.0
        out = lse = None
        if evidence.needs_probabilities:
            out, lse = self._attention_and_log_sum_exp(q, k, v, key_bias, dropout)
            with torch.no_grad(), record_function(EVIDENCE_LABEL):
                self._probabilities_by_query_blocks(q.detach(), k.detach(), key_bias,
                                                    key_padding_mask, evidence, lse)
        if out is None:
            if key_bias is None:
                mask = None
            elif evidence.key_log_size is None:
                mask = ~key_padding_mask[:, None, None, :].bool()  # exact in any dtype
            else:
                mask = key_bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        bsz, heads, tgt_len, head_dim = out.shape
        out = out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, heads * head_dim)
        return self.out_proj(out), None

    def _attention_and_log_sum_exp(self, q, k, v, key_bias, dropout):
        """(B x H x T x d output, B x H x T fp32 log-sum-exp of each query's
        logits) from one fused kernel, where ``log_sum_exp_kernels`` names the
        device and dtype; (None, None) where it does not, or the kernel
        refuses the input (the softmax pass then scores)."""
        if q.dtype not in self.log_sum_exp_kernels.get(q.device.type, ()):
            return None, None
        length = q.size(2)
        bias = None if key_bias is None else key_bias.to(q.dtype)  # 0 / -inf: exact
        try:
            if q.device.type == "cpu":
                if dropout > 0:  # the CPU kernel has no dropout
                    return None, None
                out, lse = _aten("_scaled_dot_product_flash_attention_for_cpu")(
                    q, k, v, 0.0, False, attn_mask=bias, scale=self.scaling)
            elif q.device.type == "cuda":
                if bias is not None:
                    # the memory-efficient kernel reads a bias of the full shape
                    # whose rows start at multiples of 16 elements
                    aligned = -(-length // 16) * 16
                    bias = F.pad(bias, (0, aligned - length))[..., :length].expand(
                        q.size(0), q.size(1), length, length)
                out, lse = _aten("_scaled_dot_product_efficient_attention")(
                    q, k, v, bias, True, dropout, False, scale=self.scaling)[:2]
            else:
                return None, None
        except torch.OutOfMemoryError:
            raise
        except (AttributeError, NotImplementedError, RuntimeError):
            return None, None  # no such kernel here, or not for this input
        return out, lse[..., :length].detach().float()  # the CUDA kernel pads its queries

    def _probabilities_by_query_blocks(self, q, k, key_bias, key_padding_mask, evidence,
                                       log_sum_exp=None):
        """fp32 probabilities of blocks of query rows (every head, every key),
        handed to the evidence block by block and dropped: the score needs no
        gradient and no block outlives its turn. With each query's
        ``log_sum_exp`` (B x H x T) a block is ``exp(logits - lse)``, no
        normalising pass; otherwise a softmax.

        A block takes as many of a row's queries as fit the budget and, where
        whole rows fit, as many rows: the matrix products need many queries
        per row to run fast on the CPU (blocks of 10 queries of all 8 rows
        took 1.5x as long as blocks of 87 queries of one, base width, 500
        frames)."""
        bsz, heads, length, _ = q.shape
        q = q.float() * self.scaling
        k = k.float().transpose(-1, -2)
        per_query = 4 * heads * length  # bytes of one query's probabilities, one row
        budget = self.cpu_block_bytes if q.device.type == "cpu" else self.cuda_block_bytes
        queries_per_block = min(length, max(1, budget // per_query))
        rows_per_block = max(1, budget // (per_query * queries_per_block))
        for first in range(0, bsz, rows_per_block):
            rows = slice(first, min(first + rows_per_block, bsz))
            for start in range(0, length, queries_per_block):
                queries = slice(start, min(start + queries_per_block, length))
                logits = torch.matmul(q[rows, :, queries], k[rows])
                if key_bias is not None:
                    logits += key_bias[rows]
                if log_sum_exp is None:
                    probs = logits.softmax(dim=-1)
                else:
                    probs = logits.sub_(log_sum_exp[rows, :, queries, None]).exp_()
                query_mask = None if key_padding_mask is None else key_padding_mask[:, queries]
                evidence.accumulate(probs, rows, heads, query_mask)

    def _block_shape(self, bsz: int, length: int, device: torch.device):
        """(batch rows, heads) per block of the attention map."""
        if device.type != "cpu":
            return bsz, self.num_heads
        per_head = max(1, self.cpu_block_bytes // (4 * length * length))
        if per_head >= self.num_heads:
            return max(1, per_head // self.num_heads), self.num_heads
        return 1, per_head


def _aten(name: str):
    """An aten operator by name; AttributeError where this torch has none."""
    return getattr(torch.ops.aten, name)


def attention_padding_mask(padding_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The key mask the attention sees: a row with no valid frame (a caller's
    empty utterance) attends to its filler, so its states stay finite; its
    output stays fully masked."""
    if padding_mask is None:
        return None
    return padding_mask & (~padding_mask).any(dim=1, keepdim=True)
