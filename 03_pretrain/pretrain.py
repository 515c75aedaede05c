"""Pretrain a GPT by next-token prediction: the mini-world on a CPU in minutes, a real corpus on GPUs.

    python 03_pretrain/pretrain.py --preset tiny            # the default: mini-world, ~2M params, CPU
    python 03_pretrain/pretrain.py --preset small           # 5.3M params, ~14 minutes on a 2-core CPU
    python 03_pretrain/pretrain.py --preset shakespeare-char --data /path/to/tinyshakespeare.txt
    python 03_pretrain/pretrain.py --preset gpt2 --data tinystories          # 124M, one GPU
    torchrun --standalone --nproc_per_node 8 03_pretrain/pretrain.py --preset gpt2 --data PATH
    python 03_pretrain/pretrain.py --resume                 # continue the run in --out-dir where it stopped
    python 03_pretrain/pretrain.py --overwrite              # start over in an --out-dir that holds a run

Steps: (1) dataset.prepare turns the corpus into train.bin/val.bin, training a chapter-01 BPE tokenizer
on it unless --tokenizer is given; (2) a chapter-02 GPT of the preset's shape; (3) train.train runs the
loop (optimizer.py: AdamW, warmup + cosine, clipping; checkpoint.py; evaluation, samples). A flag you pass
overrides the preset; with --resume, the settings saved in the checkpoint fill in the flags you did not pass.
A run never replaces an earlier one: an --out-dir that holds a checkpoint needs --resume or --overwrite, and
--resume refuses other data or another tokenizer (the checkpoint records both by their sha256).

Outputs, in --out-dir (default runs/03_pretrain/): ckpt.pt, tokenizer.tiktoken + tokenizer.json,
train.bin + val.bin (+ .json), metrics.jsonl, loss.png, sample.txt.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: one clear line for bad input)
import dataset  # noqa: E402  (this chapter)
import hardware  # noqa: E402
import memory_plan  # noqa: E402
import train  # noqa: E402
from checkpoint import read_run_checkpoint  # noqa: E402
from gpt import GPT, GPTConfig  # noqa: E402

DEFAULT_OUT_DIR = REPO / "runs" / "03_pretrain"
GPT2_VOCAB_SIZE = 50257

# Every preset sets every setting below; a command-line flag overrides one. Measured on this project's
# 2-core CPU (same process, alternating): at the tiny preset's size (2.2M parameters, 16 x 256 tokens) bf16
# autocast takes ~215 ms per step against ~315 ms in fp32, so `tiny` uses bf16; at shakespeare-char's size
# (0.8M, 12 x 64) bf16 is slower (32.6 against 26.7 ms), so it keeps fp32, as nanoGPT does on a CPU.
# attn_impl="sdpa" (torch's fused kernels, chapter 02's CPU presets) is ~2x our manual attention here;
# torch.compile makes tiny's step 0.75x as long but costs ~2 minutes of compiling first (lesson appendix), so off.
PRESETS = {
    # The pipeline's default: the mini-world corpus (3 MB, offline), a 2048-token BPE trained on it,
    # and chapter 02's "tiny" GPT (4 layers, 6 heads, width 192): 2.2M parameters, a few minutes on a CPU.
    "tiny": dict(data="world", bytes=None, tokenizer=None, vocab_size=2048, model="tiny", n_layer=None,
                 n_head=None, n_embd=None, gelu="tanh", dropout=0.0, bias=True, context=256, batch_size=16,
                 grad_accum=1, steps=600, lr=2e-3, min_lr=2e-4, warmup_steps=50, weight_decay=0.1, beta2=0.99,
                 optimizer="ours", precision="bf16", compile=False, eval_interval=100, eval_batches=10,
                 log_interval=20, sample_interval=200, prompt="There once was", sample_tokens=120),
    # `small`: chapter 02's "small" GPT (6 layers, 8 heads, width 256; 5.3M parameters), sized by measurement
    # so that 03 + 04 take at most 30 minutes on a 2-core CPU (lesson appendix): a training step of 16 x 256
    # tokens took 787 ms in bf16 autocast against 1138 ms in fp32 (364 ms for tiny, 1041 ms for a 6 x 320
    # model). 1000 steps = 4.1M tokens (1.7x tiny's, 5 epochs of the 3 MB corpus) in about 13 minutes.
    "small": dict(data="world", bytes=None, tokenizer=None, vocab_size=2048, model="small", n_layer=None,
                  n_head=None, n_embd=None, gelu="tanh", dropout=0.0, bias=True, context=256, batch_size=16,
                  grad_accum=1, steps=1000, lr=1.5e-3, min_lr=1.5e-4, warmup_steps=60, weight_decay=0.1,
                  beta2=0.99, optimizer="ours", precision="bf16", compile=False, eval_interval=200,
                  eval_batches=20, log_interval=20, sample_interval=500, prompt="There once was", sample_tokens=120),
    # nanoGPT's CPU recipe for character-level Shakespeare (its README): context 64, 4 layers, 4 heads,
    # width 128, batch 12, 2000 steps, lr 1e-3, dropout 0, no biases, the exact GELU (nanoGPT's nn.GELU(),
    # ~7% faster here than GPT-2's tanh form, chapter 02 section 10). A tokenizer with no merges (256 bytes +
    # <|endoftext|>) is a character vocabulary for this ASCII text. --data must point at the text.
    # The optimizer is torch's fused AdamW, the fast path: same losses as ours (tests/test_03), and at this
    # size ~1 ms of a ~26 ms step less than our one-tensor-at-a-time loop, which is the margin by which we
    # beat nanoGPT here (lesson, "Appendix: performance notes"); --optimizer ours runs at nanoGPT's speed.
    "shakespeare-char": dict(data=None, bytes=None, tokenizer=None, vocab_size=257, model="tiny", n_layer=4,
                             n_head=4, n_embd=128, gelu="erf", dropout=0.0, bias=False, context=64, batch_size=12,
                             grad_accum=1, steps=2000, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1,
                             beta2=0.99, optimizer="torch", precision="fp32", compile=False, eval_interval=250,
                             eval_batches=20, log_interval=50, sample_interval=0, prompt="\n", sample_tokens=300),
    # GPT-2 small (124M) on one GPU: GPT-2's own tokenizer (tiktoken's "gpt2", fetched once), context
    # 1024, ~0.5M tokens per step (16 x 1024 x 32), bf16, torch.compile. TinyStories is a small corpus
    # for this model: give --data a folder of text (e.g. OpenWebText) for a real run.
    "gpt2": dict(data="tinystories", bytes=None, tokenizer="gpt2", vocab_size=None, model="gpt2", n_layer=None,
                 n_head=None, n_embd=None, gelu="tanh", dropout=0.0, bias=True, context=1024, batch_size=16,
                 grad_accum=32, steps=2000, lr=6e-4, min_lr=6e-5, warmup_steps=200, weight_decay=0.1, beta2=0.95,
                 optimizer="ours", precision="auto", compile=True, eval_interval=250, eval_batches=50,
                 log_interval=10, sample_interval=500, prompt="Once upon a time", sample_tokens=100),
}
# --dry-run: a preset's model and code paths with tiny work (2 steps of 2 micro-batches of one sequence),
# to find a shape, memory or precision error on a CPU in minutes before a GPU evening finds it at minute 40.
# Data: the first 300 kB of the offline mini-world, or of --data; no compile (chapter 03's --compile test covers
# it on the tiny model; on a GPU add --compile). Flags you pass still override these.
DRY_RUN = dict(data="world", bytes=300_000, steps=2, batch_size=1, grad_accum=2, warmup_steps=1, compile=False,
               eval_interval=2, eval_batches=1, log_interval=1, sample_interval=0, sample_tokens=8)


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    count, positive, non_negative = cli.positive_int, cli.positive_float, cli.non_negative_float
    add("--preset", default="tiny", choices=sorted(PRESETS), help="the settings to start from (default: tiny)")
    add("--resume", action="store_true", help="continue from --out-dir/ckpt.pt (its settings fill in missing flags)")
    add("--overwrite", action="store_true", help="start a new run in an --out-dir that holds one (replacing it)")
    add("--out-dir", default=None, help=f"where everything goes (default: {DEFAULT_OUT_DIR})")
    add("--dry-run", action="store_true", help="the preset's model and code paths, tiny work: 2 steps, "
                                               "one-sequence micro-batches, the offline mini-world (DRY_RUN)")
    data = parser.add_argument_group("data")
    data.add_argument("--data", help=f"corpus: one of {dataset.SOURCES}, or a UTF-8 file or folder of .txt files")
    data.add_argument("--bytes", type=count, help="use only the first N bytes of the corpus")
    data.add_argument("--tokenizer", help="a saved chapter-01 tokenizer (prefix or .tiktoken), 'gpt2' for "
                                          "GPT-2's, or none to train a BPE on the corpus")
    data.add_argument("--vocab-size", type=count, help="vocab size of the BPE trained when --tokenizer is not given")
    model = parser.add_argument_group("model (chapter 02's GPT)")
    model.add_argument("--model", help="a GPTConfig preset of chapter 02 (tiny, llama-tiny, gpt2, ...)")
    model.add_argument("--n-layer", type=count)
    model.add_argument("--n-head", type=count)
    model.add_argument("--n-embd", type=count)
    model.add_argument("--gelu", choices=["tanh", "erf"], help="GPT-2's tanh GELU or the exact (erf) one")
    model.add_argument("--dropout", type=cli.fraction)
    model.add_argument("--context", type=count, help="tokens per training sequence (= the model's block_size)")
    opt = parser.add_argument_group("optimization")
    opt.add_argument("--steps", type=count, help="optimizer steps")
    opt.add_argument("--batch-size", type=count, help="sequences per micro-batch (per process)")
    opt.add_argument("--grad-accum", type=count, help="micro-batches per step, for the whole job (DDP divides it)")
    opt.add_argument("--lr", type=positive, help="peak learning rate")
    opt.add_argument("--min-lr", type=non_negative, help="learning rate at the end of the cosine")
    opt.add_argument("--warmup-steps", type=cli.non_negative_int)
    opt.add_argument("--weight-decay", type=non_negative)
    opt.add_argument("--optimizer", choices=["ours", "torch"], help="our AdamW or torch's fused one (the fast path)")
    run = parser.add_argument_group("running")
    run.add_argument("--device", help="cuda, mps or cpu (default: the first available)")
    run.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                     help="auto: bf16 on a GPU (fp16 on old ones), fp32 elsewhere")
    run.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    run.add_argument("--eval-interval", type=count, help="steps between val-loss estimates and checkpoints")
    run.add_argument("--eval-batches", type=count, help="batches per val-loss estimate")
    run.add_argument("--log-interval", type=count, help="steps between progress lines")
    run.add_argument("--sample-interval", type=cli.non_negative_int, help="steps between samples (0: only at the end)")
    run.add_argument("--prompt", help="the start of every sample")
    run.add_argument("--sample-tokens", type=count, help="tokens per sample")
    run.add_argument("--seed", type=int, default=None, help="seed of the model init and the batches (default 1337)")
    run.add_argument("--peak-flops", type=positive, help="peak FLOP/s of one device, for MFU (default: a GPU table)")
    run.add_argument("--stop-at", type=count, help="stop after this step as if interrupted (to try --resume)")
    return parser.parse_args(argv)


def resolve_settings(args):
    """Flags you passed > settings saved in the checkpoint (with --resume) > the preset's.

    Returns (settings, out_dir, saved): saved is the resumed checkpoint's record of its data (the hashes of
    its corpus and tokenizer), {} for a new run. Refuses, before anything is written, a new run in a folder
    that holds one (cli.check_out_dir) and --resume where there is nothing to resume."""
    out_dir = cli.check_out_dir(args.out_dir or DEFAULT_OUT_DIR, args.resume, args.overwrite)
    settings = dict(PRESETS[args.preset], seed=1337, device=None, peak_flops=None, stop_at=None)
    if args.dry_run:
        settings.update(DRY_RUN)
    saved = {}
    if args.resume:
        checkpoint = read_run_checkpoint(out_dir, "pretrain.py")
        settings.update({k: v for k, v in checkpoint.get("settings", {}).items() if k not in ("device", "stop_at")})
        saved = dict(checkpoint.get("data") or {}, tokenizer_sha256=checkpoint.get("tokenizer_sha256"))
        if settings["tokenizer"] not in (None, "gpt2"):  # a given tokenizer: the run folder holds its copy
            settings["tokenizer"] = str(out_dir.absolute() / "tokenizer")
    settings.update({k: v for k, v in vars(args).items() if v is not None and k in settings})
    if settings["data"] is None:
        raise ValueError(f"--preset {args.preset} needs --data: the path of the text to train on "
                         f"(e.g. --data /path/to/tinyshakespeare.txt) or one of {dataset.SOURCES}")
    return settings, out_dir, saved


def load_gpt2_tokenizer():
    """GPT-2's published tokenizer (tiktoken's "gpt2") as a chapter-01 Tokenizer."""
    import bpe
    import tiktoken
    try:
        return bpe.Tokenizer.from_tiktoken(tiktoken.get_encoding("gpt2"))
    except Exception as error:  # tiktoken downloads the vocabulary on first use
        raise ConnectionError(f"GPT-2's tokenizer is not in tiktoken's cache and could not be downloaded "
                              f"({type(error).__name__}): run once online (tiktoken keeps it in TIKTOKEN_CACHE_DIR, "
                              f"else $TMPDIR/data-gym-cache), or offline set TIKTOKEN_CACHE_DIR to a folder that "
                              f"holds it, or pass --tokenizer PATH") from None


def prepare_data(settings, out_dir, rank=0, verbose=True, expect=None):
    """Tokenize the corpus into out_dir; returns the train sidecar (dataset.prepare's dict).

    expect: the resumed run's corpus and tokenizer hashes (a different corpus or tokenizer is refused).
    Under DDP only rank 0 does the work; the others wait at a barrier, then read what it wrote.
    """
    if rank == 0:
        tokenizer = settings["tokenizer"]
        if tokenizer == "gpt2":
            saved = out_dir / "tokenizer.tiktoken"
            if saved.exists() and dataset.load_tokenizer(str(saved)).vocab_size == GPT2_VOCAB_SIZE:
                tokenizer = str(saved)  # the copy a run saved: no download needed to resume it
            else:
                tokenizer = load_gpt2_tokenizer()
        meta = dataset.prepare(settings["data"], out_dir, tokenizer=tokenizer,
                               vocab_size=settings["vocab_size"] or 2048, n_bytes=settings["bytes"], verbose=verbose,
                               expect=expect, context=settings["context"])
    if dist.is_initialized():
        dist.barrier()
    if rank != 0:
        meta = dataset.read_meta(out_dir / "train.bin")
    return meta


def model_config(settings, vocab_size):
    """Chapter 02's GPTConfig: the --model preset's shape with our context, vocab and any overrides
    (ValueError for an impossible shape, e.g. --n-embd not a multiple of --n-head)."""
    overrides = {k: settings[k] for k in ("n_layer", "n_head", "n_embd") if settings[k] is not None}
    if settings["model"].startswith("gpt2"):
        vocab_size = 64 * -(-vocab_size // 64)  # pad to a multiple of 64: faster matmuls on a GPU (50257 -> 50304)
    return GPTConfig.from_preset(settings["model"], vocab_size=vocab_size, block_size=settings["context"],
                                 gelu=settings["gelu"], dropout=settings["dropout"], bias=settings["bias"], **overrides)


def build_model(settings, vocab_size):
    """Chapter 02's GPT of model_config's shape."""
    return GPT(model_config(settings, vocab_size))


def train_config(settings, out_dir):
    """train.TrainConfig of these settings."""
    return train.TrainConfig(
        steps=settings["steps"], batch_size=settings["batch_size"], grad_accum=settings["grad_accum"],
        lr=settings["lr"], min_lr=settings["min_lr"], warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"], beta2=settings["beta2"], optimizer=settings["optimizer"],
        precision=settings["precision"], compile=settings["compile"], device=settings["device"],
        seed=settings["seed"], eval_interval=settings["eval_interval"], eval_batches=settings["eval_batches"],
        log_interval=settings["log_interval"], sample_interval=settings["sample_interval"], out_dir=str(out_dir),
        stop_at=settings["stop_at"], peak_flops=settings["peak_flops"])


def main(argv=None):
    """The script: `python pretrain.py ...` runs it through cli.run (a bad input is one line, exit code 2)."""
    return pretrain(parse_args(argv))


def pretrain(args):
    """Prepare the data, build the model, train it; returns train()'s summary."""
    rank, _, world_size = hardware.setup_ddp()
    settings, out_dir, saved = resolve_settings(args)
    log = print if rank == 0 else (lambda *a, **k: None)
    start = time.time()
    settings["precision"], note = hardware.cpu_preset_precision(
        settings["precision"], hardware.pick_device(settings["device"]), asked=args.precision is not None)
    if note:
        log(note)
    # check every setting before anything is written: a bad one must not touch the run in out_dir
    device, precision = hardware.place(settings["device"], settings["precision"], world_size)
    settings["compile"], note = hardware.resolve_compile(settings["compile"], torch.device(device).type,
                                                         asked=args.compile is True)
    if note:
        log(note)
    model_config(settings, vocab_size=settings["vocab_size"] or 2048)
    config = train_config(settings, out_dir)
    train.check_config(config, world_size)

    meta = prepare_data(settings, out_dir, rank, expect=saved)
    data = dataset.TokenDataset(out_dir)
    tokenizer = dataset.load_tokenizer(meta["tokenizer"])
    B, T = settings["batch_size"], settings["context"]

    tokens = {split: data.tokens(split) for split in ("train", "val")}  # np.memmap, opened once

    def get_batch(split, generator):  # the loop seeds `generator` for every micro-batch
        return dataset.get_batch(tokens[split], B, T, generator)

    torch.manual_seed(settings["seed"])
    model = build_model(settings, tokenizer.vocab_size)
    log(model.summary())
    log(memory_plan.describe(model, B, settings["grad_accum"] // world_size, precision, device))  # before a GPU OOMs
    tokens_per_step = B * T * settings["grad_accum"]
    log(f"data: {data.lengths['train']:,} train / {data.lengths['val']:,} val tokens; {tokens_per_step:,} tokens "
        f"per step, so {settings['steps']} steps see {settings['steps'] * tokens_per_step / data.lengths['train']:.1f} "
        f"epochs")

    prompt_ids = tokenizer.encode(settings["prompt"], allowed_special="all")

    def make_sample(model):
        device = next(model.parameters()).device
        idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        out = model.generate(idx, settings["sample_tokens"], temperature=0.8, top_k=50, seed=settings["seed"])
        # ids past the tokenizer's vocabulary (the gpt2 preset pads 50257 to 50304) have no text: drop them
        return tokenizer.decode([i for i in out[0].tolist() if i < tokenizer.vocab_size])

    # the checkpoint names its tokenizer (the run folder's copy) and the hashes of tokenizer and corpus:
    # a checkpoint is never loaded with another tokenizer, nor resumed on other data
    extra = {"stage": "base", "role": "base", "tokenizer": meta["tokenizer"], "tokenizer_sha256": meta["tokenizer_sha256"],
             "data": {"source": str(settings["data"]), "dir": str(out_dir), "corpus_sha256": meta["corpus_sha256"]},
             "settings": settings}
    summary = train.train(model, get_batch, config, make_sample=make_sample, resume=args.resume,
                          checkpoint_extra=extra)

    if rank == 0:
        print(f"\ndone: {summary['step']} steps in {time.time() - start:.0f} s "
              f"({summary['tokens_per_sec'] or 0:,.0f} training tokens/s, evaluation excluded); "
              f"final train loss {summary['train_loss']:.4f}, val loss {summary['val_loss']:.4f}")
        print(f"outputs in {out_dir}/:")
        print("  ckpt.pt                   model, optimizer, step, RNG and data state, configs, tokenizer (path, hash)")
        print("  tokenizer.tiktoken/.json  the tokenizer;  train.bin, val.bin  the tokens")
        print("  metrics.jsonl             one record per progress line and evaluation")
        print("  loss.png, sample.txt      open these next: the loss curve, and what the model writes")
        if summary["step"] < settings["steps"]:
            print(f"stopped early at step {summary['step']}: continue with  python 03_pretrain/pretrain.py "
                  f"--resume --out-dir {out_dir}")
        else:
            print("next: python 03_pretrain/scaling.py (a scaling-law fit), then chapter 04 (04_sft/) fine-tunes "
                  "this checkpoint into a chat model")
    if dist.is_initialized():
        dist.destroy_process_group()
    return summary


if __name__ == "__main__":
    cli.run(main)
