"""Chapter 03 training loop: optimizer, schedule, clipping, checkpoints, resume, DDP, scripts.

Most tests use a tiny stand-in language model (TinyLM below) so they do not depend on chapter 02;
the script tests at the end run pretrain.py and scaling.py end to end with very small settings.
Run alone as `torchrun --nproc_per_node 2 tests/test_03_train.py OUT_DIR`, this file is the DDP worker
that test_ddp_two_processes_match_one_process launches.
"""
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # launched by torchrun as the DDP worker: no conftest.py to set sys.path
    sys.path.append(str(Path(__file__).resolve().parents[1] / "03_pretrain"))

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import train
from train import AdamW, TrainConfig, clip_grad_norm, load_checkpoint, lr_at, param_groups, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


# ---- a tiny language model and batch source, standing in for chapter 02's GPT and chapter 03's data


@dataclass
class TinyConfig:
    vocab_size: int = 16
    n_embd: int = 16
    dropout: float = 0.0


class TinyLM(nn.Module):
    """Embedding -> LayerNorm -> Linear+GELU (residual) -> tied output layer; forward like chapter 02's GPT."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.ln = nn.LayerNorm(config.n_embd)
        self.mix = nn.Linear(config.n_embd, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2

    def forward(self, idx, targets=None, doc_ids=None):
        h = self.drop(self.wte(idx))
        h = h + F.gelu(self.mix(self.ln(h)))
        logits = self.lm_head(h)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss


def make_get_batch(vocab_size=16, batch_size=4, context=8, n_tokens=4000):
    """Batches from a noisy cycle 0, 3, 6, ... (mod vocab_size): learnable, so the loss goes down."""
    g = torch.Generator().manual_seed(0)
    steps = torch.where(torch.rand(n_tokens, generator=g) < 0.8, 3, torch.randint(vocab_size, (n_tokens,), generator=g))
    tokens = torch.cumsum(steps, 0) % vocab_size
    data = {"train": tokens[: n_tokens * 9 // 10], "val": tokens[n_tokens * 9 // 10:]}

    def get_batch(split, generator):
        source = data[split]
        starts = torch.randint(len(source) - context - 1, (batch_size,), generator=generator)
        x = torch.stack([source[s: s + context] for s in starts])
        y = torch.stack([source[s + 1: s + context + 1] for s in starts])
        return x, y

    return get_batch


def tiny_train_config(out_dir, **overrides):
    settings = dict(steps=30, batch_size=4, grad_accum=2, lr=3e-2, min_lr=3e-3, warmup_steps=5,
                    eval_interval=10, eval_batches=2, log_interval=5, sample_interval=10, device="cpu",
                    out_dir=str(out_dir), seed=7)
    settings.update(overrides)
    return TrainConfig(**settings)


# ---- optimizer


def test_adamw_matches_torch_adamw_over_1000_steps():
    torch.manual_seed(0)
    ours_model = TinyLM(TinyConfig())
    ref_model = TinyLM(TinyConfig())
    ref_model.load_state_dict(ours_model.state_dict())
    settings = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ours = AdamW(param_groups(ours_model, weight_decay=0.1), **settings)
    ref = torch.optim.AdamW(param_groups(ref_model, weight_decay=0.1), foreach=False, **settings)
    g = torch.Generator().manual_seed(1)
    for step in range(1000):
        for group in ours.param_groups + ref.param_groups:
            group["lr"] = 1e-2 * (0.5 + 0.5 * math.cos(math.pi * step / 1000))  # a schedule, as in training
        for p_ours, p_ref in zip(ours_model.parameters(), ref_model.parameters()):
            grad = torch.randn(p_ours.shape, generator=g) * (1 + step % 7)
            p_ours.grad, p_ref.grad = grad.clone(), grad.clone()
        ours.step()
        ref.step()
    for (name, p_ours), p_ref in zip(ours_model.named_parameters(), ref_model.parameters()):
        assert p_ours.abs().max() > 0.05, name  # the parameters really moved
        torch.testing.assert_close(p_ours, p_ref, rtol=1e-5, atol=1e-6, msg=name)


def test_param_groups_decay_only_linear_weights():
    model = TinyLM(TinyConfig())
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(model.mix.weight)]
    # the tied embedding/output matrix counts once, as an embedding; LayerNorm and biases do not decay
    expected = {id(model.wte.weight), id(model.ln.weight), id(model.ln.bias), id(model.mix.bias)}
    assert sorted(id(p) for p in no_decay["params"]) == sorted(expected)


def test_lr_schedule_values_by_hand():
    lr = lambda step: lr_at(step, max_lr=1.0, min_lr=0.1, warmup_steps=10, decay_end=110)
    assert lr(0) == pytest.approx(0.1)  # (0 + 1) / 10
    assert lr(4) == pytest.approx(0.5)
    assert lr(9) == pytest.approx(1.0)
    assert lr(10) == pytest.approx(1.0)  # the cosine starts at the top
    assert lr(60) == pytest.approx(0.55)  # halfway: 0.1 + 0.5 * (1 + cos(pi/2)) * 0.9
    assert lr(35) == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * 0.25)) * 0.9)
    assert lr(110) == pytest.approx(0.1) and lr(500) == pytest.approx(0.1)


@pytest.mark.parametrize("max_norm", [0.5, 1e3])  # clipped, and left alone
def test_clip_grad_norm_matches_torch(max_norm):
    torch.manual_seed(0)
    ours_model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    unused = nn.Parameter(torch.ones(4))  # a parameter without a gradient is skipped
    ref_model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    ref_model.load_state_dict(ours_model.state_dict())
    x = torch.randn(16, 5)
    for model in (ours_model, ref_model):
        (model(x) ** 2).sum().backward()
    ours_norm = clip_grad_norm(list(ours_model.parameters()) + [unused], max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(list(ref_model.parameters()) + [unused], max_norm)
    assert unused.grad is None
    torch.testing.assert_close(ours_norm, ref_norm)
    for p_ours, p_ref in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p_ours.grad, p_ref.grad)
    new_norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in ours_model.parameters()))
    assert new_norm.item() == pytest.approx(min(max_norm, ours_norm.item()), rel=1e-4)


# ---- checkpoints and resume


def test_resume_equals_uninterrupted_run(tmp_path):
    get_batch = make_get_batch()

    def make_sample(model):  # draws random numbers, which must not shift the training run's RNG
        return str(torch.rand(3).tolist())

    def run(out_dir, **overrides):
        torch.manual_seed(0)
        model = TinyLM(TinyConfig(dropout=0.1))  # dropout: the torch RNG state must be restored too
        config = tiny_train_config(out_dir, **overrides)
        summary = train.train(model, get_batch, config, make_sample=make_sample, resume=True, quiet=True)
        return model, summary

    straight, _ = run(tmp_path / "straight")
    first_half, summary = run(tmp_path / "resumed", stop_at=15)  # stops between two checkpoints
    assert summary["step"] == 15
    resumed, summary = run(tmp_path / "resumed")
    assert summary["step"] == 30
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    opt_a = torch.load(tmp_path / "straight" / "ckpt.pt")["optimizer"]["state"]
    opt_b = torch.load(tmp_path / "resumed" / "ckpt.pt")["optimizer"]["state"]
    for key in opt_a:
        assert torch.equal(opt_a[key]["exp_avg_sq"], opt_b[key]["exp_avg_sq"]) and opt_a[key]["step"] == 30
    # the resumed run's log continues the first one: the same training losses as the uninterrupted run
    logs = [train.read_metrics(tmp_path / d / "metrics.jsonl") for d in ("straight", "resumed")]
    losses = [[(e["step"], e["loss"]) for e in log if e["kind"] == "train"] for log in logs]
    assert len(losses[0]) == 6 and losses[0] == losses[1]
    evals = [e for e in logs[0] if e["kind"] == "eval"]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5  # it learned something
    assert (tmp_path / "resumed" / "loss.png").stat().st_size > 1000


def test_checkpoint_from_another_model_config_is_a_clear_error(tmp_path):
    model = TinyLM(TinyConfig(n_embd=16))
    save_checkpoint(tmp_path / "ckpt.pt", {"model": model.state_dict(), "model_config": train.model_config_dict(model)})
    with pytest.raises(ValueError, match=r"different model config \(n_embd: checkpoint 16, now 32\)"):
        load_checkpoint(tmp_path / "ckpt.pt", TinyLM(TinyConfig(n_embd=32)))
    # and through the loop's --resume path
    config = tiny_train_config(tmp_path, steps=2)
    with pytest.raises(ValueError, match="different model config"):
        train.train(TinyLM(TinyConfig(vocab_size=20)), make_get_batch(), config, resume=True, quiet=True)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.arange(1000)})

    def save_half_then_crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(train.torch, "save", save_half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2, "weights": torch.arange(1000)})
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # and no temp file is left behind


# ---- data parallel: 2 processes (gloo, CPU) == 1 process with the same global batch


def ddp_config(out_dir):
    return tiny_train_config(out_dir, steps=6, grad_accum=2, log_interval=1, eval_interval=6, sample_interval=0)


def test_ddp_two_processes_match_one_process(tmp_path):
    torch.manual_seed(0)
    single = TinyLM(TinyConfig())
    train.train(single, make_get_batch(), ddp_config(tmp_path / "single"), quiet=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               __file__, str(tmp_path / "ddp")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    logs = [train.read_metrics(tmp_path / d / "metrics.jsonl") for d in ("single", "ddp")]
    single_losses = [e["loss"] for e in logs[0] if e["kind"] == "train"]
    ddp_losses = [e["loss"] for e in logs[1] if e["kind"] == "train"]
    assert len(single_losses) == 6 and single_losses[-1] < single_losses[0]
    assert ddp_losses == pytest.approx(single_losses, rel=1e-5)
    ddp_weights = torch.load(tmp_path / "ddp" / "ckpt.pt")["model"]
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-5, atol=1e-6)


# ---- the scripts, end to end at a very small setting


SMALL_RUN = ["--bytes", "150000", "--vocab-size", "300", "--context", "32", "--batch-size", "4", "--n-layer", "1",
             "--n-head", "2", "--n-embd", "32", "--steps", "6", "--eval-interval", "3", "--eval-batches", "2",
             "--log-interval", "2", "--sample-interval", "0", "--sample-tokens", "8", "--device", "cpu"]


def test_pretrain_script_runs_stops_and_resumes(tmp_path, capsys):
    import pretrain

    out = ["--out-dir", str(tmp_path)]
    first = pretrain.main(["--preset", "tiny", *SMALL_RUN, *out, "--stop-at", "4"])
    assert first["step"] == 4 and "--resume" in capsys.readouterr().out
    # --resume alone: the settings come back from the checkpoint
    summary = pretrain.main(["--resume", *out])
    printed = capsys.readouterr().out
    assert summary["step"] == 6 and "resuming from" in printed and "loss.png" in printed
    assert summary["val_loss"] < math.log(300)  # better than a uniform guess over the vocabulary
    for name in ("ckpt.pt", "tokenizer.tiktoken", "tokenizer.json", "train.bin", "val.bin", "metrics.jsonl",
                 "loss.png", "sample.txt"):
        assert (tmp_path / name).stat().st_size > 0, name
    checkpoint = torch.load(tmp_path / "ckpt.pt")
    assert checkpoint["step"] == 6 and checkpoint["tokenizer"] == str(tmp_path / "tokenizer")
    assert checkpoint["model_config"]["n_embd"] == 32 and checkpoint["train_config"]["steps"] == 6
    assert {"torch", "numpy", "python"} <= set(checkpoint["rng"]) and "batch_generator" in checkpoint
    # a different model on the same run folder: a clear error, not a wall of size mismatches
    with pytest.raises(ValueError, match="different model config.*n_embd: checkpoint 32, now 64"):
        pretrain.main(["--resume", *out, "--n-embd", "64"])


def test_pretrain_help():
    result = subprocess.run([sys.executable, str(REPO / "03_pretrain" / "pretrain.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--preset" in result.stdout and "shakespeare-char" in result.stdout


def test_power_law_fit_recovers_known_exponent():
    import scaling

    n = np.array([1e4, 3e4, 1e5, 3e5, 1e6])
    a, alpha = scaling.fit_power_law(n, 20.0 * n**-0.1)
    assert a == pytest.approx(20.0, rel=1e-6) and alpha == pytest.approx(0.1, rel=1e-6)
    a, alpha, c = scaling.fit_power_law_with_constant(n, 30.0 * n**-0.3 + 1.5, grid=2000)
    assert alpha == pytest.approx(0.3, abs=0.02) and c == pytest.approx(1.5, abs=0.05)


def test_scaling_quick(tmp_path):
    import scaling

    results = scaling.main(["--quick", "--out-dir", str(tmp_path)])
    runs = results["runs"]
    assert len(runs) == 3 and all(r["tokens"] == runs[0]["tokens"] for r in runs)  # one token budget
    assert [r["non_embedding_params"] for r in runs] == sorted(r["non_embedding_params"] for r in runs)
    assert runs[-1]["val_loss"] < runs[0]["val_loss"]  # the bigger model is better on the same tokens
    assert results["fit"]["alpha"] > 0
    assert (tmp_path / "scaling.png").stat().st_size > 1000 and (tmp_path / "scaling.json").exists()


def ddp_worker(out_dir):
    rank, _, world_size = train.setup_ddp()
    assert world_size == 2
    torch.manual_seed(0)  # same initial weights on every process (DDP also broadcasts rank 0's)
    train.train(TinyLM(TinyConfig()), make_get_batch(), ddp_config(out_dir), quiet=True)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    ddp_worker(sys.argv[1])
