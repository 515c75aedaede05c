"""Benchmark: training-step throughput of our GPT against a peer, and what the KV cache buys.

    python 02_transformer/bench_gpt.py                 # both configs + generation, ~1-2 minutes on 2 cores
    python 02_transformer/bench_gpt.py --only gen      # just the KV-cache comparison
    python 02_transformer/bench_gpt.py --only budget   # where the time of one step at (b) goes

1. Training step (forward, backward, AdamW step), tokens/s, fp32, for
   (a) nanoGPT's README CPU recipe, character level: vocab 65, context 64, 4 layers, 4 heads, width 128,
       batch 12, dropout 0 (and, as in nanoGPT, no biases);
   (b) nanoGPT's Shakespeare-char model shape: 6 layers, 6 heads, width 384, context 256, here batch 8.
   Contenders: our attn_impl="manual" (every op written out), our attn_impl="sdpa" (torch's fused
   kernels), both bias-free like nanoGPT; our sdpa with biases everywhere (exactly the peer's layout);
   our sdpa with the exact (erf) GELU that nanoGPT uses instead of GPT-2's tanh form (torch's CPU kernel
   for it is ~3x faster, forward + backward); and the peer: the GPT of the book "Build a Large Language Model (From Scratch)",
   `llms_from_scratch.ch04.GPTModel` (pip install llms-from-scratch --no-deps; benchmark-only, never a
   requirement; skipped with a message when absent), at its default qkv_bias=False (its output
   projections, MLP and norms always have biases). Ours ties the output head to the embedding, the peer
   does not. Ours steps with torch.optim.AdamW(fused=True); the peer with the plain torch.optim.AdamW
   its book uses (an extra row gives the peer fused AdamW too, to separate optimizer from model).
   The contenders run in turn, round after round, in one process, so that a busy machine slows all of
   them alike; the ratios are medians of the per-round ratios.
2. Generation at the tiny preset: 256 new tokens, greedy, with and without the KV cache.
3. The time budget of one training step at (b): the same matrix multiplies, flash attention and GELU
   timed alone, against our whole step and the peer's, and the best ratio any model could reach if all
   else were free.
4. (--only tiny) The step chapters 03 and 04 take at the tiny preset on a CPU (4 x 192, context 256,
   batch 16, vocabulary 2052, bf16 autocast), whole, and with two changes that alter the numbers a
   little and are not the preset: attention computed in fp32 inside the bf16 step, and the exact GELU.
   Their pieces alone too: torch's CPU flash-attention kernel in bf16 against fp32, each GELU in bf16.
"""
import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer"]:  # the earlier chapter this file builds on (its cli plumbing)
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: one clear line for bad input)
from gpt import GPT, GPTConfig  # noqa: E402

CONFIGS = {
    "a": dict(name="(a) nanoGPT CPU char recipe", vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, batch=12),
    "b": dict(name="(b) 6 layers x 384 wide, context 256", vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, batch=8),
}


def peer_model(cfg):
    """The peer, built with the same sizes; None (and a message) when the package is missing."""
    try:
        from llms_from_scratch.ch04 import GPTModel
    except ImportError:
        print("  peer skipped: llms_from_scratch is not installed (pip install llms-from-scratch --no-deps)")
        return None
    return GPTModel(dict(vocab_size=cfg["vocab_size"], context_length=cfg["block_size"], emb_dim=cfg["n_embd"],
                         n_heads=cfg["n_head"], n_layers=cfg["n_layer"], drop_rate=0.0, qkv_bias=False))


def ours_loss(model, x, y):
    return model(x, y)[1]


def ours_loss_bf16(model, x, y):
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return model(x, y)[1]


def make_contenders(cfg, device, bf16=False):
    """name -> (model, optimizer, function returning the loss)."""
    contenders = {}
    ours = [("ours manual", "manual", False, "tanh", ours_loss), ("ours sdpa", "sdpa", False, "tanh", ours_loss),
            ("ours sdpa + biases", "sdpa", True, "tanh", ours_loss),
            ("ours sdpa, exact GELU", "sdpa", False, "erf", ours_loss)]
    if bf16:
        ours.append(("ours sdpa, bf16 autocast", "sdpa", False, "tanh", ours_loss_bf16))
    for name, impl, bias, gelu, loss_fn in ours:
        torch.manual_seed(0)
        config = GPTConfig(vocab_size=cfg["vocab_size"], block_size=cfg["block_size"], n_layer=cfg["n_layer"],
                           n_head=cfg["n_head"], n_embd=cfg["n_embd"], dropout=0.0, bias=bias, attn_impl=impl,
                           gelu=gelu)
        model = GPT(config).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
        contenders[name] = (model, optimizer, loss_fn)
    peer = peer_model(cfg)
    if peer is not None:
        def peer_loss(m, x, y):
            return F.cross_entropy(m(x).flatten(0, 1), y.flatten())
        def peer_loss_bf16(m, x, y):
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return peer_loss(m, x, y)
        peers = [("peer", False, peer_loss), ("peer + fused AdamW", True, peer_loss)]
        if bf16:
            peers.append(("peer + fused AdamW, bf16 autocast", True, peer_loss_bf16))
        for name, fused, loss_fn in peers:
            torch.manual_seed(0)
            model = peer_model(cfg).to(device)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=fused or None)
            contenders[name] = (model, optimizer, loss_fn)
    return contenders


def synchronize(device):
    """Wait for the GPU: its kernels run asynchronously, so a timer read without this measures the queueing."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def train_step(model, optimizer, loss_fn, x, y):
    loss = loss_fn(model, x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def train_steps(model, optimizer, loss_fn, batches):
    """One untimed step (the previous contender left other data in the caches and the allocator), then
    one timed step per batch; returns tokens/s."""
    train_step(model, optimizer, loss_fn, *batches[0])
    synchronize(batches[0][0].device)
    start = time.perf_counter()
    for x, y in batches:
        train_step(model, optimizer, loss_fn, x, y)
    synchronize(batches[0][0].device)
    seconds = time.perf_counter() - start
    return sum(x.numel() for x, _ in batches) / seconds


def bench_training(key, rounds, steps, device, bf16=False):
    cfg = CONFIGS[key]
    print(f"\n{cfg['name']}: vocab {cfg['vocab_size']}, context {cfg['block_size']}, {cfg['n_layer']} layers, "
          f"{cfg['n_head']} heads, width {cfg['n_embd']}, batch {cfg['batch']}; {steps} steps x {rounds} rounds each")
    contenders = make_contenders(cfg, device, bf16)
    data = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(steps):
        chunk = torch.randint(0, cfg["vocab_size"], (cfg["batch"], cfg["block_size"] + 1), generator=data)
        batches.append((chunk[:, :-1].to(device), chunk[:, 1:].to(device)))
    for model, optimizer, loss_fn in contenders.values():  # warm-up: allocator, kernels, optimizer state
        train_steps(model, optimizer, loss_fn, batches[:1])
    speeds = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, (model, optimizer, loss_fn) in contenders.items():
            speeds[name].append(train_steps(model, optimizer, loss_fn, batches))
    print(f"  {'contender':<34} {'tokens/s':>10} {'x peer':>8}   "
          f"(median of {rounds} rounds; ratio: median of per-round ratios)")
    for name, values in speeds.items():
        ratio = ""
        if "peer" in speeds and name != "peer":
            ratio = f"{statistics.median(v / p for v, p in zip(values, speeds['peer'])):8.2f}"
        print(f"  {name:<34} {statistics.median(values):10,.0f} {ratio:>8}")


def bench_generation(rounds, new_tokens, device):
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny")).to(device).eval()
    prompt = torch.randint(0, model.config.vocab_size, (1, 16), device=device)
    print(f"\ngeneration: tiny preset ({model.num_params() / 1e6:.1f}M params), prompt 16 tokens, "
          f"{new_tokens} new tokens, greedy, batch 1; {rounds} rounds")
    times = {"KV cache": [], "no cache": []}
    outputs = {}
    model.generate(prompt, 8, temperature=0)  # warm-up
    for _ in range(rounds):
        for name in times:
            synchronize(device)
            start = time.perf_counter()
            outputs[name] = model.generate(prompt, new_tokens, temperature=0, use_cache=name == "KV cache")
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    same = torch.equal(outputs["KV cache"], outputs["no cache"])
    for name, values in times.items():
        print(f"  {name:<10} {new_tokens / statistics.median(values):8,.0f} tokens/s")
    speedup = statistics.median(n / c for c, n in zip(times["KV cache"], times["no cache"]))
    print(f"  speedup with the KV cache: {speedup:.1f}x (identical tokens: {same})")


def time_ms(fn, repeats, device):
    """Median wall time of fn() in milliseconds, after two untimed calls."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench_budget(device, repeats=7):
    """Config (b), piece by piece: what one training step must spend whatever the model's code."""
    cfg = CONFIGS["b"]
    B, T, C, H, L = cfg["batch"], cfg["block_size"], cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    N = B * T
    print(f"\ntime budget of one training step at {cfg['name']} ({N} tokens), ms; each piece timed alone")
    matmul_ms = 0.0  # one layer's
    for n_in, n_out in [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)]:  # qkv, attention out, MLP up, MLP down
        x, w, grad_y = (torch.randn(N, n_in, device=device), torch.randn(n_out, n_in, device=device),
                        torch.randn(N, n_out, device=device))
        matmul_ms += time_ms(lambda: x @ w.t(), repeats, device)       # forward: y = x W^T
        matmul_ms += time_ms(lambda: grad_y @ w, repeats, device)      # backward: dL/dx = dL/dy W
        matmul_ms += time_ms(lambda: grad_y.t() @ x, repeats, device)  # backward: dL/dW = dL/dy^T x
    q, k, v = (torch.randn(B, H, T, C // H, device=device, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(B, H, T, C // H, device=device)
    attention_ms = time_ms(lambda: torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                                       (q, k, v), grad_out), repeats, device)
    h = torch.randn(B, T, 4 * C, device=device, requires_grad=True)
    grad_h = torch.randn(B, T, 4 * C, device=device)
    gelu_ms = {kind: time_ms(lambda: torch.autograd.grad(F.gelu(h, approximate=kind), h, grad_h),
                             repeats, device)
               for kind in ("tanh", "none")}
    steps = {}
    for name, (model, optimizer, loss_fn) in make_contenders(cfg, device).items():
        if name in ("ours sdpa", "ours sdpa, exact GELU", "peer"):
            x, y = (torch.randint(0, cfg["vocab_size"], (B, T), device=device) for _ in range(2))
            steps[name] = time_ms(lambda: train_step(model, optimizer, loss_fn, x, y), repeats, device)
    n_matmuls = L * 4 * 3  # layers x 4 weight matrices x (forward + 2 backward)
    matmul_ms *= L
    rows = [(f"{n_matmuls} matrix multiplies (forward and backward)", matmul_ms),
            (f"flash attention, forward + backward, x {L} layers", L * attention_ms),
            (f"GELU tanh, forward + backward, x {L} layers", L * gelu_ms["tanh"]),
            (f"  (exact erf GELU instead: {L * gelu_ms['none']:.0f})", None)]
    for label, ms in rows:
        print(f"  {label:<52} {'' if ms is None else f'{ms:8.0f}'}")
    kernels_ms = matmul_ms + L * (attention_ms + gelu_ms["tanh"])
    print(f"  {'sum of these kernels':<52} {kernels_ms:8.0f}")
    for name, ms in steps.items():
        print(f"  {'whole step: ' + name:<52} {ms:8.0f}")
    if "peer" in steps:
        print(f"  best ratio to the peer if all but the matmuls were free:  {steps['peer'] / matmul_ms:.2f}x")
        print(f"  ... if all but these kernels were free:                   {steps['peer'] / kernels_ms:.2f}x")
        print(f"  ours sdpa (this measurement):                             {steps['peer'] / steps['ours sdpa']:.2f}x")


def fp32_attention(sdpa):
    """F.scaled_dot_product_attention computed in fp32 whatever autocast does, returned in q's dtype."""
    def attention(q, k, v, **kwargs):
        with torch.autocast(q.device.type, enabled=False):
            return sdpa(q.float(), k.float(), v.float(), **kwargs).to(q.dtype)
    return attention


def bench_tiny(device, rounds, repeats=5):
    """The tiny preset's training step in bf16 autocast (chapters 03 and 04 on a CPU), whole and in pieces."""
    B, T, C, H, L, V = 16, 256, 192, 6, 4, 2052
    config = GPTConfig.from_preset("tiny", vocab_size=V, block_size=T)
    x, y = (torch.randint(0, V, (B, T), device=device) for _ in range(2))
    print(f"\nthe tiny preset's training step ({L} x {C}, context {T}, batch {B}, vocab {V}), bf16 autocast, ms")

    def step_ms(gelu, attention_in_fp32):
        torch.manual_seed(0)
        model = GPT(dataclasses.replace(config, gelu=gelu)).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sdpa = F.scaled_dot_product_attention
        if attention_in_fp32:
            F.scaled_dot_product_attention = fp32_attention(sdpa)
        try:
            return time_ms(lambda: train_step(model, optimizer, ours_loss_bf16, x, y), repeats, device)
        finally:
            F.scaled_dot_product_attention = sdpa

    variants = {"as the preset (bf16 attention, tanh GELU)": ("tanh", False),
                "attention in fp32": ("tanh", True), "attention in fp32, exact GELU": ("erf", True)}
    times = {name: [] for name in variants}
    for _ in range(rounds):  # in turn, so that a busy machine slows all of them alike
        for name, (gelu, fp32) in variants.items():
            times[name].append(step_ms(gelu, fp32))
    base = times[next(iter(variants))]
    for name, ms in times.items():  # the ratio: the median of the per-round ratios, as in part 1
        ratio = statistics.median(b / m for b, m in zip(base, ms))
        print(f"  whole step, {name:<44} {statistics.median(ms):6.0f}  ({ratio:.2f}x)")
    q, k, v = (torch.randn(B, H, T, C // H, device=device, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(B, H, T, C // H, device=device)
    for dtype in (torch.bfloat16, torch.float32):
        qd, kd, vd = (t.detach().to(dtype).requires_grad_() for t in (q, k, v))
        ms = time_ms(lambda: torch.autograd.grad(F.scaled_dot_product_attention(qd, kd, vd, is_causal=True),
                                                 (qd, kd, vd), grad_out.to(dtype)), repeats, device)
        print(f"  flash attention forward + backward, {str(dtype)[6:]:<8} x {L} layers {L * ms:21.0f}")
    h = torch.randn(B, T, 4 * C, device=device, dtype=torch.bfloat16, requires_grad=True)
    for kind in ("tanh", "none"):
        ms = time_ms(lambda: torch.autograd.grad(F.gelu(h, approximate=kind), h, torch.ones_like(h)), repeats, device)
        print(f"  GELU {kind:<4} forward + backward, bfloat16 x {L} layers {L * ms:21.0f}")


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["a", "b", "gen", "budget", "tiny"], action="append",
                        help="run only these parts (repeatable); default: a, b and gen")
    parser.add_argument("--rounds", type=cli.positive_int, default=5, help="alternating rounds per measurement (default 5)")
    parser.add_argument("--steps-a", type=cli.positive_int, default=10, help="training steps per round at config (a)")
    parser.add_argument("--steps-b", type=cli.positive_int, default=3, help="training steps per round at config (b)")
    parser.add_argument("--new-tokens", type=cli.positive_int, default=256, help="tokens to generate (default 256)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    parser.add_argument("--bf16", action="store_true",
                        help="add two rows: our sdpa path and the peer (fused AdamW), each under bf16 autocast")
    args = parser.parse_args(argv)
    if args.device not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {args.device}: use cpu, cuda or mps")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu")
    if args.device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: MPS is not available here; use --device cpu")
    parts = args.only or ["a", "b", "gen"]
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads (torch's default)")
    if "a" in parts:
        bench_training("a", args.rounds, args.steps_a, args.device, args.bf16)
    if "b" in parts:
        bench_training("b", args.rounds, args.steps_b, args.device, args.bf16)
    if "gen" in parts:
        bench_generation(max(3, args.rounds // 2), args.new_tokens, args.device)
    if "budget" in parts:
        bench_budget(args.device)
    if "tiny" in parts:
        bench_tiny(args.device, args.rounds)


if __name__ == "__main__":
    cli.run(main)
