"""The memory a training run needs, and the micro-batch that fits a GPU: what to know before renting one.

    plan = memory_plan(GPTConfig.from_preset("gpt2"), batch_size=16, precision="bf16")   # bytes per part
    print(format_plan(plan, batch_size=16, grad_accum=32, precision="bf16"))
    batch_size, grad_accum = fit_micro_batch(config, global_batch=512, free_bytes=15e9, precision="fp16")
    print(describe(model, 16, 32, "bf16", "cuda"))    # what pretrain.py prints: the plan, and what fits
    measured = measure_saved_bytes(model, (x, y))     # what autograd really keeps, to check the formula
    python 03_pretrain/memory_plan.py                 # the lesson's table: GPT-2 small on 16, 24, 80 GB cards

Training memory has two parts. The training state does not depend on the batch:
    parameters  4 N          fp32 master weights (autocast never changes them)
    gradients   4 N          fp32, one per parameter, kept across the micro-batches of a step
    AdamW       8 N          m and v, fp32 (optimizer.AdamW, or torch's)
    weight copies a N_mm     under bf16/fp16 autocast, each matmul's weight cast to 16 bits is saved for
                             backward (a = 2; N_mm = the weights of nn.Linear layers, lm_head included)
So 16 N bytes in fp32 and ~18 N under autocast: 2.0 GB (fp32) and 2.2 GB (bf16) for GPT-2's 124M.
The activations autograd keeps for backward grow with the micro-batch B (activation_bytes, below); at the
end of the forward pass they are all alive at once, and the loss's backward adds two more (B, T, vocab)
fp32 tensors on top (loss_backward_bytes). peak = state + activations + loss backward.

The formula is derived from chapter 02's GPT as implemented, in eager mode (torch.compile fuses ops and
usually keeps less: the formula is then an upper bound), without dropout (every preset uses 0). Checked
on the CPU (tests/test_03_pretrain.py): against measure_saved_bytes, to the byte for every tested config,
and the whole peak against the process's peak resident memory, within 10 %. On a GPU the flash and
memory-efficient attention kernels save the same tensors (q, k, v, out, logsumexp); their memory layout,
not checked here, may add or spare a copy of width C per layer.
"""
import weakref

import torch
import torch.nn as nn

GB = 1e9  # GPU memory is sold in GB (16 GB T4) but torch reports bytes: we print GB = 1e9 bytes
USABLE_FRACTION = 0.9  # of the free memory: the CUDA caching allocator fragments, kernels need workspace


def element_bytes(precision):
    """Bytes of one activation element under `precision`: 2 for bf16/fp16 autocast, 4 for fp32."""
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision {precision!r}: use fp32, bf16 or fp16")
    return 4 if precision == "fp32" else 2


def count_params(config):
    """(N, N_mm) of chapter 02's GPT with this config, without allocating it (built on the meta device).

    N: every parameter (a tied lm_head counted once); N_mm: the weights of nn.Linear layers (lm_head too).
    """
    from gpt import GPT  # chapter 02 (on sys.path in every script of this chapter)
    with torch.device("meta"):
        model = GPT(config)
    n_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return model.num_params(), n_matmul


def state_bytes(n_params, n_matmul, precision):
    """The part that does not grow with the batch: {"params", "grads", "optimizer", "weight_copies"} in bytes.

        params 4 N,  grads 4 N,  optimizer (AdamW's m and v) 8 N,  weight_copies a N_mm (0 in fp32)
    """
    copies = 0 if precision == "fp32" else element_bytes(precision) * n_matmul
    return {"params": 4 * n_params, "grads": 4 * n_params, "optimizer": 8 * n_params, "weight_copies": copies}


def layer_bytes_per_token(config, precision, context):
    """Bytes one Block keeps for backward per token (B*T of them per micro-batch), a = element_bytes:

        norm (x2)   fused LayerNorm: input 4C + mean, rstd 8;  our layer_norm: x - mean 4C, normalised 4C,
                    rstd 4;  RMSNorm (both): input 4C, normalised 4C, rstd 4.   Plus its output, cast for
                    the next matmul: a C.   (The residual stream and the norms stay fp32 under autocast.)
        attention   sdpa:   q, k, v 3aC (views of c_attn's output) + out aC + logsumexp 4H
                            + with RoPE: the rotated q, k 2aC, and out is copied for c_proj, aC
                    manual: q, k, v copies 3aC + exp(scores) 4HT + weights aHT + row sums 4H
                            + out copied for c_proj aC
        MLP         hidden F: F.gelu 2aF (input, output); our gelu_tanh 7aF; gelu_erf 4aF;
                    SwiGLU: F.silu 4aF (gate, silu(gate), up, product); our silu 5aF; under autocast
                    w_gate and w_up each cast the norm's output to 16 bits: a second copy, aC
    Per micro-batch and layer, independent of B: RoPE's cos/sin read at T positions for q and k, 4 x T x D/2
    x 4 bytes, and the manual path's causal mask, T^2 bytes (layer_fixed_bytes). The sdpa path keeps no
    T x T matrix: that is why flash attention saves memory as well as time.
    GPT-2 small in bf16 with sdpa: 2(4C + 8 + 2C) + 4aC + 4H + 2aF = 20C + 4F + 4H + 16 = 27,712 bytes per
    token per layer, 341 MB per 1024-token sequence over its 12 layers.
    """
    a, C, H, F = element_bytes(precision), config.n_embd, config.n_head, config.mlp_hidden
    fused = config.attn_impl == "sdpa"
    rope = config.pos == "rope"
    if config.norm == "layernorm" and fused:
        norm = 4 * C + 8 + a * C
    else:  # our layer_norm, and RMSNorm either way
        norm = 8 * C + 4 + a * C
    if fused:
        attention = 3 * a * C + a * C + 4 * H + (3 * a * C if rope else 0)
    else:
        attention = 3 * a * C + 4 * H * context + a * H * context + 4 * H + a * C
    if config.mlp == "gelu":
        mlp = 2 * a * F if fused else (7 if config.gelu == "tanh" else 4) * a * F
    else:
        mlp = (4 if fused else 5) * a * F + (a * C if precision != "fp32" else 0)  # 2nd cast of its input
    return 2 * norm + attention + mlp


def layer_fixed_bytes(config, context, precision, batch_size=1, sft=False):
    """Bytes one Block keeps per micro-batch beside the per-token ones.

        RoPE        cos and sin read at the positions, for q and k: 4 x T x D/2 x 4 (x B with sft=True,
                    where every row has its own positions)
        mask        the manual path's causal mask, a T x T bool: T^2.   With sft=True's (B, 1, T, T) mask
                    of packed rows: B T^2 (manual: the bool ~mask) or a B T^2 (sdpa turns it into an
                    additive mask of the activations' dtype)
    """
    T, rows = context, batch_size if sft else 1
    rope = rows * 4 * T * (config.n_embd // config.n_head // 2) * 4 if config.pos == "rope" else 0
    if not sft:
        mask = T * T if config.attn_impl == "manual" else 0
    else:
        mask = batch_size * T * T * (1 if config.attn_impl == "manual" else element_bytes(precision))
    return rope + mask


def activation_bytes(config, batch_size, precision, context=None, sft=False):
    """Bytes autograd keeps for backward in one micro-batch of batch_size x context tokens (default
    config.block_size), next-token loss; {"blocks", "embedding", "head"} (their sum: the activations).

        blocks     n_layer (B T layer_bytes_per_token + layer_fixed_bytes)
        embedding  token ids 8 B T (+ positions 8 T with learned positions)
        head       per token: the final norm (as in a block) + its output a C + log_softmax(logits) 4 V
                   + the target 8; plus 4 bytes. 4 V is 201 KB per token for GPT-2's 50304 tokens: more
                   than a whole layer (27.7 KB in bf16). Big vocabularies cost their memory here.
    sft=True: chapter 04's packed rows (doc_ids) and masked loss: the documents of a row are kept apart
    by a (B, 1, T, T) mask (layer_fixed_bytes), positions are (B, T), 8 B T, the loss mask adds 4 B T + 4.
    """
    T = context or config.block_size
    a, C, V = element_bytes(precision), config.n_embd, config.vocab_size
    tokens = batch_size * T
    norm = 4 * C + 8 if config.norm == "layernorm" and config.attn_impl == "sdpa" else 8 * C + 4
    blocks = config.n_layer * (tokens * layer_bytes_per_token(config, precision, T)
                               + layer_fixed_bytes(config, T, precision, batch_size, sft))
    positions = (8 * tokens if sft else 8 * T) if config.pos == "learned" else 0
    embedding = 8 * tokens + positions
    head = tokens * (norm + a * C + 4 * V + 8 + (4 if sft else 0)) + (8 if sft else 4)
    return {"blocks": blocks, "embedding": embedding, "head": head}


def loss_backward_bytes(config, batch_size, context=None):
    """The backward pass of the cross-entropy briefly holds the gradient of log_softmax and of the logits,
    two more fp32 (B, T, V) tensors beside the saved log-probs: 8 B T V bytes (an estimate: autograd's
    temporaries are not saved tensors, so measure_saved_bytes cannot see them)."""
    return 8 * batch_size * (context or config.block_size) * config.vocab_size


def memory_plan(config, batch_size, precision, context=None, counts=None, sft=False):
    """Every part of a training run's peak memory, in bytes, for micro-batches of batch_size sequences.

    Returns {"params", "grads", "optimizer", "weight_copies", "activations", "loss_backward", "total",
    "per_sequence"} where activations = sum of activation_bytes, per_sequence what one more sequence in the
    micro-batch adds. counts: (N, N_mm) if known (default: count_params(config)).
    """
    n_params, n_matmul = counts or count_params(config)
    plan = state_bytes(n_params, n_matmul, precision)
    plan["activations"] = sum(activation_bytes(config, batch_size, precision, context, sft).values())
    plan["loss_backward"] = loss_backward_bytes(config, batch_size, context)
    plan["total"] = sum(plan.values())
    per_batch = lambda b: sum(activation_bytes(config, b, precision, context, sft).values()) \
        + loss_backward_bytes(config, b, context)
    plan["per_sequence"] = per_batch(2) - per_batch(1)
    return plan


def fit_micro_batch(config, global_batch, free_bytes, precision, context=None, counts=None, sft=False,
                    usable=USABLE_FRACTION):
    """The largest micro-batch that fits in `free_bytes` for the same global batch: (batch_size, grad_accum)
    with batch_size x grad_accum = global_batch, batch_size a divisor of it, and
    memory_plan(batch_size).total <= usable x free_bytes. None if not even one sequence fits.

    On a GPU free_bytes = torch.cuda.mem_get_info()[0] (the CUDA context is already out of it); `usable`
    leaves 10 % for the allocator's fragmentation and the kernels' workspaces.
    """
    counts = counts or count_params(config)
    for batch_size in sorted((d for d in range(1, global_batch + 1) if global_batch % d == 0), reverse=True):
        if memory_plan(config, batch_size, precision, context, counts, sft)["total"] <= usable * free_bytes:
            return batch_size, global_batch // batch_size
    return None


def human_bytes(n):
    """1.5e9 -> '1.50 GB', 2.5e6 -> '2.5 MB' (GB = 1e9 bytes, as GPUs are sold)."""
    return f"{n / GB:.2f} GB" if n >= 0.1 * GB else f"{n / 1e6:.1f} MB"


def format_plan(plan, batch_size, grad_accum, precision):
    """The lines a script prints before training."""
    g = lambda key: human_bytes(plan[key])
    return (f"memory plan ({precision}, micro-batch {batch_size} x {grad_accum} accumulated, eager mode): params "
            f"{g('params')} + grads {g('grads')} + AdamW {g('optimizer')}"
            + (f" + 16-bit weight copies {g('weight_copies')}" if plan["weight_copies"] else "")
            + f"\n  + activations {g('activations')} + loss backward {g('loss_backward')} = {g('total')} at the peak "
            f"({human_bytes(plan['per_sequence'])} per sequence of the micro-batch; 03_pretrain/memory_plan.py)")


def describe(model, batch_size, grad_accum, precision, device, context=None, sft=False):
    """What pretrain.py and sft.py print: the plan of this run and, on CUDA, whether it fits the GPU's free
    memory and which micro-batch x accumulation would (the same global batch)."""
    config = model.config
    counts = (model.num_params(), sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)))
    plan = memory_plan(config, batch_size, precision, context, counts, sft)
    lines = [format_plan(plan, batch_size, grad_accum, precision)]
    if str(device).startswith("cuda"):
        free = torch.cuda.mem_get_info(torch.device(device))[0]
        best = fit_micro_batch(config, batch_size * grad_accum, free, precision, context, counts, sft)
        fits = plan["total"] <= USABLE_FRACTION * free
        if best is None:
            lines.append(f"  does NOT fit: {human_bytes(free)} free on {device}, and even one sequence needs "
                         f"{human_bytes(memory_plan(config, 1, precision, context, counts, sft)['total'])}: "
                         f"use a smaller model or --context")
        else:
            lines.append(f"  {human_bytes(free)} free on {device}: {'fits' if fits else 'does NOT fit'}; the largest "
                         f"micro-batch that fits in {USABLE_FRACTION:.0%} of it: --batch-size {best[0]} --grad-accum "
                         f"{best[1]} (the same global batch)")
    return "\n".join(lines)


def rl_plan(config, rows, minibatches, sequence_length, precision, algorithm="ppo", counts=None, score_chunk=None):
    """What chapter 05's PPO or GRPO stage (rl_loop.train_policy) holds, in bytes: an estimate from the
    same terms, not measured. rows = prompts_per_step x group_size replies per step, each at most
    sequence_length = prompt + max_new_tokens tokens; one update sees rows / minibatches of them.

        policy         4N + 4N + 8N: weights, gradients, AdamW (PPO's value head, C + 1 weights, shares its
                       body: one Linear more, trained with it)
        reference      4N: the frozen SFT model (ref_model), weights only
        reward_model   4N: a frozen copy of the SFT body with a score head (PPO; GRPO trains on the gold
                       reward and loads none)
        kv_cache       the rollout's cache, 2 n_layer C a bytes per token of rows x sequence_length
        scoring        the no-grad passes (pi_old, the reference, the reward model), score_chunk rows at a time
                       (rl_loop's RLConfig.score_chunk; None: all rows at once), turn the logits into log-probs
                       and entropy (logprobs_from_logits): logits a, log p 4, p 4, p log p 4 bytes per
                       vocabulary entry at once, (a + 12) min(rows, score_chunk) T V
        update         one minibatch with gradients: the blocks as in training (padded rows carry a mask
                       like sft=True's) + the head's log p and p (8 V per token) + the loss backward 8 B T V
    peak = policy + reference + reward_model + 16-bit weight copies + max(kv_cache, scoring, update).
    """
    n_params, n_matmul = counts or count_params(config)
    a, T, V = element_bytes(precision), sequence_length, config.vocab_size
    batch = -(-rows // minibatches)
    acts = activation_bytes(config, batch, precision, T, sft=True)
    update = acts["blocks"] + acts["embedding"] + acts["head"] + batch * T * 4 * V + loss_backward_bytes(config, batch, T)
    plan = {"policy": 16 * n_params + (16 * (config.n_embd + 1) if algorithm == "ppo" else 0),
            "reference": 4 * n_params, "reward_model": 4 * n_params if algorithm == "ppo" else 0,
            "weight_copies": state_bytes(n_params, n_matmul, precision)["weight_copies"],
            "kv_cache": 2 * config.n_layer * config.n_embd * a * rows * T,
            "scoring": (a + 12) * min(rows, score_chunk or rows) * T * V, "update": update}
    plan["total"] = plan["policy"] + plan["reference"] + plan["reward_model"] + plan["weight_copies"] \
        + max(plan["kv_cache"], plan["scoring"], plan["update"])
    return plan


# ----------------------------------------------------------------------------------------------------
# per GPU class: what fits, and how long it takes

# Memory free to a process once the CUDA context is up (an assumption: nvidia-smi's total less ~0.8 GB),
# and peak dense tensor FLOP/s at the precision the card trains in (vendors' data sheets, no sparsity).
GPU_CLASSES = {
    "T4 16 GB (fp16)": dict(free_bytes=15.0e9, precision="fp16", peak_flops=65e12),
    "A10 / L4 24 GB (bf16)": dict(free_bytes=23.0e9, precision="bf16", peak_flops=121e12),
    "A100 / H100 80 GB (bf16)": dict(free_bytes=84.0e9, precision="bf16", peak_flops=312e12),
}


def training_seconds(flops_per_token, tokens, peak_flops, mfu):
    """Time to train on `tokens` tokens: tokens x flops_per_token / (mfu x peak_flops).

    tokens/s = mfu x peak_flops / flops_per_token. MFU (model FLOPs utilisation) is what a run really
    gets of the chip's peak: ~30-50 % for a well-tuned GPT-2 run on an A100 (nanoGPT, llm.c), lower on
    small cards and in eager mode. An estimate until the run measures it (the loop prints its MFU).
    """
    return tokens * flops_per_token / (mfu * peak_flops)


def main():
    """python 03_pretrain/memory_plan.py: the tables of the lessons' appendices (03 and 04)."""
    import sys
    from pathlib import Path
    sys.path.append(str(Path(__file__).resolve().parents[1] / "02_transformer"))
    from gpt import GPTConfig
    runs = [("03 pretrain gpt2", GPTConfig.from_preset("gpt2", vocab_size=50304), 16, 32, 2000, False),
            ("04 SFT gpt2", GPTConfig.from_preset("gpt2", vocab_size=50304), 8, 4, 1500, True)]
    for name, config, batch_size, grad_accum, steps, sft in runs:
        counts = count_params(config)
        print(f"\n{name}: {counts[0] / 1e6:.1f}M parameters, context {config.block_size}, global batch "
              f"{batch_size} x {grad_accum} sequences, {steps} steps")
        for gpu, card in GPU_CLASSES.items():
            plan = memory_plan(config, batch_size, card["precision"], counts=counts, sft=sft)
            best = fit_micro_batch(config, batch_size * grad_accum, card["free_bytes"], card["precision"],
                                   counts=counts, sft=sft)
            print(f"  {gpu:26s} preset micro-batch {batch_size}: {plan['total'] / GB:5.1f} GB "
                  f"({'fits' if plan['total'] <= USABLE_FRACTION * card['free_bytes'] else 'does not fit'}); "
                  f"fits: --batch-size {best[0]} --grad-accum {best[1]} "
                  f"({memory_plan(config, best[0], card['precision'], counts=counts, sft=sft)['total'] / GB:.1f} GB)")


if __name__ == "__main__":
    main()


# ----------------------------------------------------------------------------------------------------
# measuring what autograd keeps, to check the formula


def measure_saved_bytes(model, batch, loss_fn=None, precision="fp32"):
    """Bytes of the tensors autograd keeps for backward after one forward pass of `loss_fn(model, batch)`
    (default: model(x, y)'s loss) on the CPU, measured: each storage counted once (q, k and v are views
    of one), the model's parameters and buffers left out (they are the state), and only what is still
    held when the loss is computed (softmax's max is saved by amax, then dropped with .detach()).
    Under autocast the 16-bit weight copies are included: compare with activations + weight_copies."""
    from hardware import autocast  # this chapter
    own = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    held = []  # weak references to what autograd holds: a node freed early takes its saved tensors along

    class Saved:  # what autograd stores in place of the tensor; it lives exactly as long as the node
        def __init__(self, tensor):
            self.tensor = tensor.detach()  # without its grad_fn: an output saved with it would be a cycle

    def pack(tensor):
        saved = Saved(tensor)
        held.append(weakref.ref(saved))
        return saved

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda saved: saved.tensor):
        with autocast("cpu", precision):
            loss = loss_fn(model, batch) if loss_fn else model(*batch)[1]
        storages = {}
        for ref in held:
            saved = ref()
            if saved is not None and saved.tensor.untyped_storage().data_ptr() not in own:
                storages[saved.tensor.untyped_storage().data_ptr()] = saved.tensor.untyped_storage().nbytes()
    del loss
    return sum(storages.values())
