#!/usr/bin/env python3
"""Peer trainer for the language-model benchmark: the BitNet b1.58 decoder of
`qat-hw train --model bitnet-tiny --data text:PATH`, written in plain PyTorch.

Byte-level tokens from the same corpus and the SAME train/validation split as qat-hw
(training/src/text.cpp: entry rules, FNV-1a 64 + splitmix64 hash, one entry in ten to validation),
the same seeded sequence sampler (one per epoch, seeded as qat-hw's epoch_seed), and validation
bits per byte over the same tiled windows. Sizes and recipe from models/bitnet-tiny.toml; the
phases of qat-hw's run: the FP32 twin, PTQ of its weights, QAT (from the twin with qat_init fp32).
Prints ONE JSON object on stdout; progress goes to stderr. See README.md in this folder.

  --check-split   print the split (entries, bytes, FNV-1a 64 of each split's token stream, the
                  validation windows, a hash of the sampler's first batches) as JSON and exit;
                  bench/peers/text_split_check.cpp prints the same from the C++ code.
"""
import argparse
import os
import sys

MODEL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "bitnet-tiny.toml")
# Where models/bitnet-tiny.toml cannot be read: its values when this peer was written.
DEFAULT_SIZES = {"layers": 2, "width": 128, "heads": 4, "context": 64, "ffn": 512}
DEFAULT_RECIPE = {"epochs": 4, "steps_per_epoch": 250, "batch": 32, "lr": 4e-3, "weight_decay": 0.05,
                  "qat_init": "fp32"}


def read_model_file(path):
    """(sizes, recipe) from a model file's [transformer] and [training] tables (docs/transformer.md),
    or ({}, {}) where there is no such file."""
    if not os.path.isfile(path):
        return {}, {}
    import tomllib
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    t, r = doc.get("transformer", {}), doc.get("training", {})
    if t.get("vocabulary", 256) != 256:
        raise SystemExit(f"{path}: transformer.vocabulary must be 256 (bytes)")
    return ({k: t[k] for k in DEFAULT_SIZES if k in t}, {k: r[k] for k in DEFAULT_RECIPE if k in r})


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["fp32", "qat"], default="qat")
    p.add_argument("--weights", choices=["ternary", "int4"], default="ternary")
    p.add_argument("--ste", choices=["identity", "clipped"], default="identity")
    p.add_argument("--attn", choices=["float", "int8"], default="float",
                   help="attention arithmetic: float (scaled_dot_product_attention, BitNet b1.58's), or int8 "
                        "(Q, K, V fake-quantized per token and head to INT8, probabilities to 8-bit codes)")
    p.add_argument("--pos", choices=["learned", "none"], default="learned",
                   help="position information: a learned absolute position embedding added to the byte's "
                        "(qat-hw's model), or none (causal attention alone)")
    p.add_argument("--model-file", default=MODEL_FILE,
                   help="qat-hw model file whose sizes and [training] recipe are the defaults "
                        "(models/bitnet-tiny.toml)")
    for size in DEFAULT_SIZES:
        p.add_argument(f"--{size}", type=int, default=None,
                       help=f"model size (default: the model file's, else {DEFAULT_SIZES[size]})")
    p.add_argument("--epochs", type=int, default=None, help="epochs per phase (default: the model file's)")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="steps of an epoch (default: the model file's)")
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default: the model file's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the model file's)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="AdamW weight decay of the matrices in the first half (default: the model file's)")
    p.add_argument("--qat-init", choices=["scratch", "fp32"], default=None,
                   help="where QAT starts: the FP32 phase's weights, or the seed's initialisation "
                        "(default: the model file's)")
    p.add_argument("--no-fp32", action="store_true", help="--mode qat: skip the FP32 phase (and PTQ)")
    p.add_argument("--max-steps", type=int, default=0, help="stop each phase after N steps (0: run all)")
    p.add_argument("--warmup-frac", type=float, default=0.05)
    p.add_argument("--norm-eps", type=float, default=1e-5, help="RMSNorm eps (added to the mean square)")
    p.add_argument("--seed", type=int, default=1, help="initialisation and the sequence sampler's seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default="/usr/share/games/fortunes", help="text file or folder (qat-hw's text:PATH)")
    p.add_argument("--eval-batch", type=int, default=256, help="validation windows per forward pass")
    p.add_argument("--max-eval-windows", type=int, default=0,
                   help="evaluate only the first N tiled windows (0: all; quick checks only)")
    p.add_argument("--check-split", action="store_true", help="print the corpus split as JSON and exit")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:N")
    a = p.parse_args(argv)
    file_sizes, file_recipe = read_model_file(a.model_file)
    a.sizes_from = {}
    for key, default in list(DEFAULT_SIZES.items()) + list(DEFAULT_RECIPE.items()):
        have = file_sizes if key in DEFAULT_SIZES else file_recipe
        if getattr(a, key) is not None:
            a.sizes_from[key] = "option"
        elif key in have:
            setattr(a, key, have[key])
            a.sizes_from[key] = os.path.relpath(a.model_file)
        else:
            setattr(a, key, default)
            a.sizes_from[key] = "built-in"
    if min(a.layers, a.width, a.heads, a.context, a.ffn) < 1 or a.width % a.heads:
        p.error("sizes must be positive and --width a multiple of --heads")
    if min(a.threads, a.batch, a.epochs, a.steps_per_epoch, a.eval_batch) < 1 or a.max_steps < 0:
        p.error("--threads, --batch, --epochs, --steps-per-epoch and --eval-batch must be positive, "
                "--max-steps non-negative")
    return a


ARGS = parse_args()

# Thread counts must be in the environment before torch (and its OpenMP/BLAS runtimes) load.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

MASK64 = (1 << 64) - 1


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The text corpus: training/src/text.cpp, rule for rule (docs/text-corpus.md)
# ---------------------------------------------------------------------------------------------

VALIDATION_EVERY = 10


class DataError(Exception):
    pass


def splitmix64_mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def fnv1a64(data, h=0xCBF29CE484222325):
    for c in data:
        h = ((h ^ c) * 0x100000001B3) & MASK64
    return h


def entry_hash(entry):
    return splitmix64_mix(fnv1a64(entry))


def is_validation_entry(entry):
    return entry_hash(entry) % VALIDATION_EVERY == 0


def is_corpus_file_name(name):
    return name != "" and "." not in name


def lines_of(text):
    """The lines without their '\\n'; a last line without '\\n' counts, an empty one does not."""
    lines = text.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def split_entries(text):
    """(fortune_format, entries): as text.cpp's split_entries."""
    lines = lines_of(text)
    fortune = any(line == b"%" for line in lines)
    entries, entry = [], []

    def close():
        e = b"".join(entry)
        if e.strip(b" \t\r\n") != b"":
            entries.append(e)
        entry.clear()

    for line in lines:
        separator = line == b"%" if fortune else line.strip(b" \t\r") == b""
        if separator:
            close()
            continue
        entry.append(line + b"\n")
    close()
    return fortune, entries


def read_corpus_file(path, must_hold_text):
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror})")
    if must_hold_text and not text:
        raise DataError(f"{path}: empty file")
    nul = text.find(b"\0")
    if nul >= 0:
        raise DataError(f"{path}: not text (a NUL byte at offset {nul})")
    return text


def load_text_corpus(path):
    """dict(files, train, validation (bytes), train_entries, validation_entries), as load_text_corpus."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    folder = os.path.isdir(path)
    if folder:
        names = [n for n in os.listdir(path) if is_corpus_file_name(n) and os.path.isfile(os.path.join(path, n))]
        if not names:
            raise DataError(f"{path}: no corpus files (regular files whose names have no extension)")
        names.sort(key=os.fsencode)  # byte order of the names, as std::string's operator<
        files = [os.path.join(path, n) for n in names]
    elif os.path.isfile(path):
        files = [path]
    else:
        raise DataError(f"{path}: neither a regular file nor a folder")
    train, validation = [], []
    counts = [0, 0]
    for file in files:
        fortune, entries = split_entries(read_corpus_file(file, not folder))
        separator = b"%\n" if fortune else b"\n"
        for entry in entries:
            v = is_validation_entry(entry)
            (validation if v else train).extend((entry, separator))
            counts[v] += 1
    if counts[0] + counts[1] == 0:
        raise DataError(f"{path}: holds no text entries (only whitespace)")
    return {"files": files, "train": b"".join(train), "validation": b"".join(validation),
            "train_entries": counts[0], "validation_entries": counts[1]}


class SequenceSampler:
    """text.cpp's SequenceSampler: uniform starts in [0, size - context) from splitmix64 with
    rejection, so the same seed draws the same sequences as qat-hw."""

    def __init__(self, tokens, context, seed, what):
        if len(tokens) < context + 1:
            raise DataError(f"{what}: {len(tokens)} tokens, too short for one sequence of context {context} "
                            f"(it needs {context + 1})")
        self.tokens, self.context, self.state = tokens, context, seed & MASK64

    def starts(self):
        return len(self.tokens) - self.context

    def tiled(self):
        return (len(self.tokens) - 1) // self.context

    def draw_below(self, bound):
        limit = MASK64 - ((MASK64 % bound) + 1) % bound
        while True:
            self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
            x = splitmix64_mix(self.state)
            if x <= limit:
                return x % bound

    def next_starts(self, batch):
        n = self.starts()
        return [self.draw_below(n) for _ in range(batch)]


def check_split(args):
    corpus = load_text_corpus(args.data)
    train = SequenceSampler(corpus["train"], args.context, args.seed, f"{args.data} (train split)")
    validation = SequenceSampler(corpus["validation"], args.context, args.seed, f"{args.data} (validation split)")
    inputs = targets = 0xCBF29CE484222325
    c = args.context
    for _ in range(2):
        for s in train.next_starts(4):
            inputs = fnv1a64(corpus["train"][s:s + c], inputs)
            targets = fnv1a64(corpus["train"][s + 1:s + 1 + c], targets)
    out = {"files": len(corpus["files"]), "train_entries": corpus["train_entries"],
           "validation_entries": corpus["validation_entries"], "train_bytes": len(corpus["train"]),
           "validation_bytes": len(corpus["validation"]), "train_fnv1a64": f"{fnv1a64(corpus['train']):016x}",
           "validation_fnv1a64": f"{fnv1a64(corpus['validation']):016x}", "context": c,
           "validation_windows": validation.tiled(), "seed": args.seed,
           "sampler_inputs_fnv1a64": f"{inputs:016x}", "sampler_targets_fnv1a64": f"{targets:016x}"}
    print(json.dumps(out))


if ARGS.check_split:
    try:
        check_split(ARGS)
    except DataError as e:
        log(f"bitnet_lm: {e}")
        sys.exit(1)
    sys.exit(0)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)
try:
    torch.set_num_interop_threads(ARGS.threads)
except RuntimeError:  # already set (only possible when imported into a running process)
    pass


# ---------------------------------------------------------------------------------------------
# BitNet b1.58
# ---------------------------------------------------------------------------------------------

QMAX_ACT = 127
QMAX_PROB = 255


def ste(x, xq):
    """xq in the forward, the identity's gradient in the backward."""
    return x + (xq - x).detach()


def fake_quant_tokens(x):
    """BitNet b1.58's activation quantizer: absmax INT8 per token (the last dimension),
    s = 127 / max(|x_token|, 1e-5), xq = clamp(round(x s), +-127) / s. Straight-through."""
    s = QMAX_ACT / x.detach().abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return ste(x, (x * s).round().clamp(-QMAX_ACT, QMAX_ACT) / s)


class BitLinear(nn.Linear):
    """nn.Linear without bias whose forward, while `quantized`, is BitNet b1.58's: per-token absmax
    INT8 inputs, ternary absmean weights ({-1,0,1} x mean|W|) or INT4 per-output-row absmax
    weights ([-7,7] x max|W_row|/7), straight-through estimators (identity, or the weight's
    gradient zeroed where its quantizer clips: |W/scale| > qmax + 1/2)."""

    def __init__(self, fin, fout, weights, ste_kind):
        super().__init__(fin, fout, bias=False)
        self.weights, self.ste_kind, self.quantized = weights, ste_kind, False

    def quantized_weight(self):
        w = self.weight
        if self.weights == "ternary":
            qmax = 1
            scale = w.detach().abs().mean().clamp(min=1e-5)
        else:
            qmax = 7
            scale = w.detach().abs().amax(dim=1, keepdim=True).clamp(min=1e-5) / qmax
        wq = (w / scale).round().clamp(-qmax, qmax) * scale
        if self.ste_kind == "clipped":
            w = torch.where((w / scale).abs() <= qmax + 0.5, w, w.detach())
        return ste(w, wq)

    def forward(self, x):
        if not self.quantized:
            return F.linear(x, self.weight)
        return F.linear(fake_quant_tokens(x), self.quantized_weight())


class Block(nn.Module):
    def __init__(self, a, linear):
        super().__init__()
        self.heads, self.eps, self.attn = a.heads, a.norm_eps, a.attn
        # RMSNorm gains as logarithms (g = e^theta, initially 1), as qat-hw learns them.
        self.attn_log_gain = nn.Parameter(torch.zeros(a.width))
        self.q, self.k, self.v, self.o = (linear(a.width, a.width) for _ in range(4))
        self.ffn_log_gain = nn.Parameter(torch.zeros(a.width))
        self.up, self.down = linear(a.width, a.ffn), linear(a.ffn, a.width)
        self.quantized = False

    def attention(self, x):
        b, t, c = x.shape
        h = self.heads
        q, k, v = (m(x).view(b, t, h, c // h).transpose(1, 2) for m in (self.q, self.k, self.v))
        if self.attn == "float" or not self.quantized:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # INT8 operands for the vector unit: Q, K, V per token and head; probabilities as
            # unsigned 8-bit codes at scale 1/255.
            q, k, v = fake_quant_tokens(q), fake_quant_tokens(k), fake_quant_tokens(v)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(c // h)
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            p = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            p = ste(p, (p * QMAX_PROB).round() / QMAX_PROB)
            y = p @ v
        return self.o(y.transpose(1, 2).reshape(b, t, c))

    def forward(self, x):
        x = x + self.attention(F.rms_norm(x, (x.shape[-1],), self.attn_log_gain.exp(), self.eps))
        h = self.up(F.rms_norm(x, (x.shape[-1],), self.ffn_log_gain.exp(), self.eps))
        return x + self.down(F.relu(h).square())


class BitNetLM(nn.Module):
    def __init__(self, a):
        super().__init__()
        linear = lambda fin, fout: BitLinear(fin, fout, a.weights, a.ste)  # noqa: E731
        self.eps = a.norm_eps
        self.embed = nn.Embedding(256, a.width)
        # x = embedding[token] + position[t], as qat-hw (docs/transformer.md).
        self.pos = nn.Embedding(a.context, a.width) if a.pos == "learned" else None
        self.blocks = nn.ModuleList(Block(a, linear) for _ in range(a.layers))
        self.final_log_gain = nn.Parameter(torch.zeros(a.width))
        self.head = linear(a.width, 256)
        with torch.no_grad():
            # qat-hw's initialisation: matrices U(+-1/sqrt(fan_in)), the embeddings U(+-1).
            self.embed.weight.uniform_(-1.0, 1.0)
            if self.pos is not None:
                self.pos.weight.uniform_(-1.0, 1.0)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    bound = 1.0 / math.sqrt(m.in_features)
                    m.weight.uniform_(-bound, bound)

    def set_quantized(self, on):
        for m in self.modules():
            if isinstance(m, (BitLinear, Block)):
                m.quantized = on

    def forward(self, tokens):
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos.weight[:tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(F.rms_norm(x, (x.shape[-1],), self.final_log_gain.exp(), self.eps))


def describe(a):
    pos = ", learned positions" if a.pos == "learned" else ", no position encoding"
    return (f"embed 256x{a.width}{pos}; {a.layers} x [rmsnorm, bitlinear q,k,v {a.width}->{a.width}, "
            f"causal attention {a.heads} heads ({a.attn}), bitlinear o, residual; rmsnorm, bitlinear up "
            f"{a.width}->{a.ffn}, squared relu, bitlinear down {a.ffn}->{a.width}, residual]; rmsnorm, "
            f"bitlinear head {a.width}->256; no biases")


def quantizers(a):
    w = ("ternary {-1,0,1} x per-tensor mean|W|" if a.weights == "ternary"
         else "INT4 [-7,7] x per-output-row max|W_row|/7")
    attn = ("attention in float (scaled_dot_product_attention)" if a.attn == "float"
            else "attention: Q, K, V per token and head absmax INT8, probabilities round(p 255)/255")
    return (f"plain PyTorch fake-quant in every BitLinear (q, k, v, o, up, down, head): input per-token absmax "
            f"INT8 [-127,127]; weights {w}; STE {a.ste}; {attn}; embeddings, RMSNorm (gains as logarithms) and "
            f"residual stream in fp32")


# ---------------------------------------------------------------------------------------------
# Schedule (identical to the other peers and the C++ trainer's learning_rate / weight_decay)
# ---------------------------------------------------------------------------------------------

def learning_rate(args, step, total):
    warmup = max(1, int(math.floor(args.warmup_frac * total + 0.5)))
    if step < warmup:
        return args.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return args.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def weight_decay(args, step, total):
    return args.weight_decay if step < total // 2 else 0.0


# ---------------------------------------------------------------------------------------------
# Train / evaluate
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def bits_per_byte(model, stream, context, eval_batch, max_windows, device):
    """Mean cross-entropy in bits over the targets of the tiled windows (starts 0, context,
    2 context, ...; (size - 1) // context of them), as text.h's evaluation reads the split."""
    windows = (stream.shape[0] - 1) // context
    if max_windows:
        windows = min(windows, max_windows)
    idx = torch.arange(windows).unsqueeze(1) * context + torch.arange(context + 1)
    was_training = model.training
    model.eval()
    nats = 0.0
    for start in range(0, windows, eval_batch):
        seq = stream[idx[start:start + eval_batch]].to(device)
        logits = model(seq[:, :-1])
        nats += float(F.cross_entropy(logits.reshape(-1, 256), seq[:, 1:].reshape(-1), reduction="sum"))
    model.train(was_training)
    return nats / (windows * context) / math.log(2), windows


def torch_source():
    path = os.path.realpath(torch.__file__)
    return "debian" if path.startswith("/usr/lib/python3/dist-packages/") else "pypi"


def epoch_seed(seed, epoch):
    """The seed of an epoch's sampler: qat-hw's epoch_seed (transformer_net.cpp)."""
    return (seed * 0x9E3779B97F4A7C15 + epoch + 1) & MASK64


PROGRESS_WINDOWS = 128  # qat-hw's progress line reads the first 128 tiled validation sequences


def run_phase(name, model, args, corpus, train_tokens, val_tokens, device):
    """One phase as qat-hw's run_text_phase: epochs of steps_per_epoch steps, each epoch's batches
    from a sampler seeded by epoch_seed, fresh AdamW moments, warm-up + cosine over the phase,
    weight decay on the matrices in its first half; the final bits per byte over every tiled
    validation window. Timing: the training loop only (per epoch, evaluation outside)."""
    model.set_quantized(name == "qat")
    model.train()
    # Weight decay on the BitLinear matrices only, not the embeddings or gains (as qat-hw).
    decay = [m.weight for m in model.modules() if isinstance(m, BitLinear)]
    ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": decay, "decays": True}, {"params": no_decay, "decays": False}],
                            lr=0.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    total = args.epochs * args.steps_per_epoch
    limit = min(total, args.max_steps) if args.max_steps else total
    offsets = torch.arange(args.context + 1)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step, train_seconds, epoch_rates, epoch_val = 0, 0.0, [], []
    loss_sum = torch.zeros((), device=device)
    last_epoch_loss = None
    for epoch in range(args.epochs):
        if step >= limit:
            break
        sampler = SequenceSampler(corpus["train"], args.context, epoch_seed(args.seed, epoch),
                                  f"{args.data} (train split)")
        epoch_loss = torch.zeros((), device=device)
        epoch_steps = 0
        sync()
        t0 = time.perf_counter()
        while epoch_steps < args.steps_per_epoch and step < limit:
            # Batch gathering is timed, as in the other peers: the sampler's draws, then a gather.
            starts = torch.tensor(sampler.next_starts(args.batch)).unsqueeze(1) + offsets
            seq = train_tokens[starts].to(device)
            for group in opt.param_groups:
                group["lr"] = learning_rate(args, step, total)
                group["weight_decay"] = weight_decay(args, step, total) if group["decays"] else 0.0
            logits = model(seq[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, 256), seq[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_loss += loss.detach()
            step += 1
            epoch_steps += 1
        sync()
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        epoch_rates.append(epoch_steps / seconds)
        loss_sum += epoch_loss
        last_epoch_loss = float(epoch_loss) / epoch_steps
        val, _ = bits_per_byte(model, val_tokens, args.context, args.eval_batch, PROGRESS_WINDOWS, device)
        model.train()
        epoch_val.append(val)
        log(f"{name} epoch {epoch + 1}/{args.epochs}: train {last_epoch_loss / math.log(2):.3f} bits/byte, "
            f"validation (first {PROGRESS_WINDOWS} windows) {val:.3f}, {epoch_steps / seconds:.2f} steps/s")
    t_eval = time.perf_counter()
    bpb, windows = bits_per_byte(model, val_tokens, args.context, args.eval_batch, args.max_eval_windows, device)
    log(f"{name}: validation {bpb:.4f} bits/byte over {windows} windows, {step / train_seconds:.2f} steps/s")
    return {
        "steps": step,
        "scheduled_steps": total,
        "train_seconds": train_seconds,
        "steps_per_s": step / train_seconds if train_seconds > 0 else 0.0,
        "tokens_per_s": step * args.batch * args.context / train_seconds if train_seconds > 0 else 0.0,
        "epoch_steps_per_s": epoch_rates,
        "epoch_validation_bits_per_byte": epoch_val,  # the first 128 windows, as qat-hw's progress line
        "train_bits_per_byte_last_epoch": last_epoch_loss / math.log(2) if last_epoch_loss is not None else None,
        "validation_bits_per_byte": bpb,
        "validation_windows": windows,
        "eval_seconds": time.perf_counter() - t_eval,
    }


def main(args):
    device = torch.device(args.device)
    try:
        corpus = load_text_corpus(args.data)
        SequenceSampler(corpus["train"], args.context, args.seed, f"{args.data} (train split)")
        SequenceSampler(corpus["validation"], args.context, args.seed, f"{args.data} (validation split)")
    except DataError as e:
        log(f"bitnet_lm: {e}")
        sys.exit(1)
    train_tokens = torch.from_numpy(np.frombuffer(corpus["train"], dtype=np.uint8).astype(np.int64))
    val_tokens = torch.from_numpy(np.frombuffer(corpus["validation"], dtype=np.uint8).astype(np.int64))

    torch.manual_seed(args.seed)
    model = BitNetLM(args).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    train_fp32 = args.mode == "fp32" or not args.no_fp32
    log(f"bitnet-lm {args.mode} {args.weights} threads={args.threads}: {args.layers} layers, width {args.width}, "
        f"{args.heads} heads, context {args.context}, ffn {args.ffn}, {parameters} parameters; "
        f"{corpus['train_entries']} train / {corpus['validation_entries']} validation entries; per phase "
        f"{args.epochs} x {args.steps_per_epoch} steps of {args.batch} sequences"
        + (f", stopping after {args.max_steps}" if args.max_steps else ""))

    load_start = os.getloadavg()[0]  # other work on the machine skews the timing
    phases = {}
    ptq_bpb = None
    if train_fp32:
        phases["fp32"] = run_phase("fp32", model, args, corpus, train_tokens, val_tokens, device)
        # PTQ: the FP32 phase's weights with the QAT forward of --weights.
        model.set_quantized(True)
        ptq_bpb, _ = bits_per_byte(model, val_tokens, args.context, args.eval_batch, args.max_eval_windows, device)
        log(f"ptq ({args.weights}): validation {ptq_bpb:.4f} bits/byte")
    if args.mode == "qat":
        if not (args.qat_init == "fp32" and train_fp32):
            torch.manual_seed(args.seed)
            model = BitNetLM(args).to(device)
        phases["qat"] = run_phase("qat", model, args, corpus, train_tokens, val_tokens, device)
    main_phase = phases[args.mode]
    result = {
        "framework": "torch",
        "framework_version": torch.__version__,
        "torch_version": torch.__version__,
        "torch_source": torch_source(),
        "model": "bitnet-tiny",
        "network": describe(args),
        "sizes": {k: getattr(args, k) for k in DEFAULT_SIZES},
        "settings_from": args.sizes_from,
        "parameters": parameters,
        "mode": args.mode,
        "weights": args.weights,  # fp32 mode: the PTQ evaluation's weights
        "ste": args.ste if args.mode == "qat" else None,
        "qat_init": args.qat_init if args.mode == "qat" else None,
        "attn": args.attn,
        "pos": args.pos,
        "norm_eps": args.norm_eps,
        "threads": args.threads,
        "device": args.device,
        "data": args.data,
        "corpus": {"files": len(corpus["files"]), "train_entries": corpus["train_entries"],
                   "validation_entries": corpus["validation_entries"], "train_bytes": len(corpus["train"]),
                   "validation_bytes": len(corpus["validation"])},
        "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "batch": args.batch,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup_frac": args.warmup_frac,
        "max_steps": args.max_steps,
        # The mode's phase (qat in qat mode), as the other peers' top-level fields.
        "steps": main_phase["steps"],
        "train_seconds": main_phase["train_seconds"],
        "steps_per_s": main_phase["steps_per_s"],
        "tokens_per_s": main_phase["tokens_per_s"],
        "validation_bits_per_byte": main_phase["validation_bits_per_byte"],
        "fp32": phases.get("fp32"),
        "qat": phases.get("qat"),
        "ptq_bits_per_byte": ptq_bpb,
        "quantizers": quantizers(args),
        "seed": args.seed,
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_1m_start": round(load_start, 2),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(ARGS)
