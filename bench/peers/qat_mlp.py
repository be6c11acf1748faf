#!/usr/bin/env python3
"""Peer trainer for the side-by-side training benchmark: the QAT MLP of `qat-hw train`,
written in plain PyTorch (--framework torch) or Brevitas (--framework brevitas).

Trains a bias-free MLP on Fashion-MNIST with the same recipe as the C++ trainer and prints
ONE JSON object on stdout; progress goes to stderr. See README.md in this folder.
"""
import argparse
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=["torch", "brevitas"], required=True)
    p.add_argument("--mode", choices=["fp32", "qat"], default="qat")
    p.add_argument("--weights", choices=["ternary", "int4"], default="ternary")
    p.add_argument("--hidden", default="256,256", help="comma-separated hidden widths")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-frac", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ste", choices=["identity", "clipped"], default="identity")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N training steps (0: no limit)")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:N")
    a = p.parse_args(argv)
    a.hidden = [int(h) for h in a.hidden.split(",") if h.strip()]
    if a.framework == "brevitas" and a.mode == "fp32":
        p.error("--mode fp32 is only offered with --framework torch")
    if a.threads < 1 or a.batch < 1 or a.epochs < 1 or a.max_steps < 0:
        p.error("--threads, --batch and --epochs must be positive, --max-steps non-negative")
    return a


ARGS = parse_args()

# Thread counts must be in the environment before torch (and its OpenMP/BLAS runtimes) load.
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where set, are left untouched.
import os  # noqa: E402

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import gzip  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)
try:
    torch.set_num_interop_threads(ARGS.threads)
except RuntimeError:  # already set (only possible when imported into a running process)
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def read_idx(path, magic, header):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    got = int.from_bytes(raw[0:4], "big")
    if got != magic:
        raise ValueError(f"{path}: IDX magic {got:#x}, expected {magic:#x}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header)


def load_split(data_dir, split):
    images = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"), 0x00000803, 16)
    labels = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"), 0x00000801, 8)
    n = labels.shape[0]
    if images.shape[0] != n * 784:
        raise ValueError(f"{data_dir}/{split}: {images.shape[0]} pixels for {n} labels of 28x28")
    x = torch.from_numpy(images.reshape(n, 784).astype(np.float32) / np.float32(255.0))
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

QMAX_ACT = 127


class BitLinear(nn.Linear):
    """Bias-free Linear with BitNet-b1.58-style fake quantization (plain PyTorch).

    Input: per-row (per-token) absmax INT8, straight-through gradient.
    Weight: ternary (per-tensor absmean scale) or INT4 (per-output-channel absmax / 7),
    straight-through gradient (identity, or zeroed where the quantizer clips).
    """

    def __init__(self, in_features, out_features, weights, ste):
        super().__init__(in_features, out_features, bias=False)
        self.weights = weights
        self.ste = ste

    def quantized_weight(self):
        w = self.weight
        if self.weights == "ternary":
            qmax = 1
            scale = w.abs().mean().clamp(min=1e-5)
        else:
            qmax = 7
            scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-5) / qmax
        wq = (w / scale).round().clamp(-qmax, qmax) * scale
        if self.ste == "clipped":
            keep = (w / scale).abs() <= qmax + 0.5
            w = torch.where(keep, w, w.detach())  # no gradient where the quantizer clips
        return w + (wq - w).detach()

    def forward(self, x):
        s = QMAX_ACT / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        xq = (x * s).round().clamp(-QMAX_ACT, QMAX_ACT) / s
        x = x + (xq - x).detach()
        return F.linear(x, self.quantized_weight())


def torch_layers(sizes, mode, weights, ste):
    if mode == "fp32":
        return [nn.Linear(i, o, bias=False) for i, o in zip(sizes[:-1], sizes[1:])]
    return [BitLinear(i, o, weights, ste) for i, o in zip(sizes[:-1], sizes[1:])]


TORCH_QUANTIZERS = {
    "fp32": "none (nn.Linear, fp32)",
    "ternary": "plain PyTorch fake-quant, exactly the recipe: input per-row absmax INT8 [-127,127] "
               "(scale 127/max|x_row|); weights ternary {-1,0,1} x per-tensor mean|W|; STE {ste}",
    "int4": "plain PyTorch fake-quant, exactly the recipe: input per-row absmax INT8 [-127,127] "
            "(scale 127/max|x_row|); weights INT4 [-7,7] x per-output-channel max|W_row|/7; STE {ste}",
}


def brevitas_layers(sizes, weights, ste):
    """The same network from brevitas.nn.QuantLinear with the closest Brevitas quantizers.

    Inputs (every layer, the first and last too): Int8DynamicActPerRowFloat -- Brevitas' own
      dynamic per-row quantizer, shipped in the wheel's brevitas_examples.common.generative
      .quantizers (brevitas.quant has no dynamic one) -- with narrow_range=True: scale
      max|x_row|/127 (AbsMax), codes [-127,127], as in the recipe. Falls back to the static
      Int8ActPerTensorFloat (narrow range) where that module is missing.
    Weights, ternary: Int8WeightPerTensorFloat with bit_width=2 (narrow range: codes {-1,0,1})
      and scaling_stats_op=AVE (AbsAve: scale = mean|W|), i.e. BitNet's absmean ternary.
      (brevitas.quant.ternary's quantizers use a constant scale and a threshold instead.)
    Weights, int4: Int8WeightPerChannelFloat with bit_width=4 (narrow range: codes [-7,7],
      scale = per-output-channel max|W_row|/7), as in the recipe.
    The forward values are the recipe's. The gradients differ: Brevitas does not detach the
    scales, so the weight gradient also flows through mean|W| / max|W_row| and the input
    gradient through max|x_row|. `--ste clipped` has no stock equivalent and is rejected.
    ReLU stays a plain nn.ReLU: its output is quantized as the next layer's input.
    """
    import warnings

    import brevitas.nn as qnn

    # Emitted by every QuantLinear call with return_quant_tensor=False; harmless here.
    warnings.filterwarnings("ignore", message="Could not compute output scale factor")
    from brevitas.core.stats import StatsOp
    from brevitas.quant.scaled_int import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat

    if ste != "identity":
        raise SystemExit("--framework brevitas supports --ste identity only")

    class TernaryWeightPerTensorAbsMean(Int8WeightPerTensorFloat):
        bit_width = 2
        narrow_range = True
        scaling_stats_op = StatsOp.AVE

    class Int4WeightPerChannelAbsMax(Int8WeightPerChannelFloat):
        bit_width = 4
        narrow_range = True

    try:
        from brevitas_examples.common.generative.quantizers import Int8DynamicActPerRowFloat

        # Per-row settings exactly as brevitas_examples' generative quantize() applies them for
        # input_quant_granularity='per_row'; plus narrow_range for the recipe's [-127,127].
        aq = Int8DynamicActPerRowFloat.let(
            dynamic_scaling_broadcastable_fn=lambda x, shape: x.view(*shape[:-1], 1),
            permute_dims=None, stats_reduce_dim=1, narrow_range=True)
        act_desc = ("inputs brevitas_examples.common.generative.quantizers.Int8DynamicActPerRowFloat(narrow_range=True): dynamic "
                    "per-row absmax INT8 [-127,127]")
    except ImportError:
        from brevitas.quant.scaled_int import Int8ActPerTensorFloat

        class Int8ActPerTensorNarrow(Int8ActPerTensorFloat):
            narrow_range = True

        aq = Int8ActPerTensorNarrow
        act_desc = ("inputs Int8ActPerTensorFloat(narrow_range=True): STATIC per-tensor INT8 [-127,127] "
                    "(no dynamic per-row quantizer in this Brevitas)")
    if weights == "ternary":
        wq = TernaryWeightPerTensorAbsMean
        w_desc = ("weights Int8WeightPerTensorFloat(bit_width=2, narrow_range=True, scaling_stats_op=AVE): "
                  "{-1,0,1} x per-tensor mean|W|")
    else:
        wq = Int4WeightPerChannelAbsMax
        w_desc = ("weights Int8WeightPerChannelFloat(bit_width=4, narrow_range=True): [-7,7] x "
                  "per-channel max|W_row|/7")
    desc = (f"brevitas.nn.QuantLinear: {act_desc}; {w_desc}; plain nn.ReLU. Forward as the recipe; "
            "differs in the backward: Brevitas keeps the gradient through the scales (not detached).")
    layers = [qnn.QuantLinear(i, o, bias=False, weight_quant=wq, input_quant=aq, return_quant_tensor=False)
              for i, o in zip(sizes[:-1], sizes[1:])]
    return layers, desc


def build_model(args, sizes):
    torch.manual_seed(args.seed)
    if args.framework == "torch":
        layers = torch_layers(sizes, args.mode, args.weights, args.ste)
        desc = TORCH_QUANTIZERS["fp32" if args.mode == "fp32" else args.weights].replace("{ste}", args.ste)
    else:
        layers, desc = brevitas_layers(sizes, args.weights, args.ste)
    mods = []
    for i, layer in enumerate(layers):
        bound = 1.0 / math.sqrt(layer.in_features)
        with torch.no_grad():
            layer.weight.uniform_(-bound, bound)
        mods.append(layer)
        if i + 1 < len(layers):
            mods.append(nn.ReLU())
    return nn.Sequential(*mods), desc


# ---------------------------------------------------------------------------------------------
# Schedule (identical to the C++ trainer's learning_rate / weight_decay)
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
def evaluate(model, x, y, batch=500):
    model.eval()
    correct = 0
    for start in range(0, x.shape[0], batch):
        logits = model(x[start:start + batch])
        correct += int((logits.argmax(dim=1) == y[start:start + batch]).sum())
    model.train()
    return correct / x.shape[0]


def torch_source():
    path = os.path.realpath(torch.__file__)
    if path.startswith("/usr/lib/python3/dist-packages/"):
        return "debian"
    return "pypi"


def main(args):
    device = torch.device(args.device)
    x_train, y_train = (t.to(device) for t in load_split(args.data, "train"))
    x_test, y_test = (t.to(device) for t in load_split(args.data, "t10k"))
    sizes = [784] + args.hidden + [10]
    model, quantizers = build_model(args, sizes)
    model.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=0.0, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=args.weight_decay)

    n = x_train.shape[0]
    steps_per_epoch = n // args.batch
    total = steps_per_epoch * args.epochs
    limit = min(total, args.max_steps) if args.max_steps > 0 else total
    gen = torch.Generator().manual_seed(args.seed)
    log(f"{args.framework} {args.mode} {args.weights} threads={args.threads}: "
        f"{steps_per_epoch} steps/epoch, {total} scheduled steps, running {limit}")

    load_start = os.getloadavg()[0]  # other work on the machine skews the timing
    step = 0
    train_seconds = 0.0
    for epoch in range(args.epochs):
        if step >= limit:
            break
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        epoch_steps = 0
        sync()
        t0 = time.perf_counter()
        for s in range(steps_per_epoch):
            if step >= limit:
                break
            idx = order[s * args.batch:(s + 1) * args.batch]
            xb, yb = x_train[idx], y_train[idx]
            for group in opt.param_groups:
                group["lr"] = learning_rate(args, step, total)
                group["weight_decay"] = weight_decay(args, step, total)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            step += 1
            epoch_steps += 1
        sync()
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        log(f"epoch {epoch + 1}/{args.epochs}: loss {float(loss_sum) / max(1, epoch_steps):.4f}, "
            f"{epoch_steps / seconds:.1f} steps/s")

    test_accuracy = evaluate(model, x_test, y_test)
    log(f"test accuracy {test_accuracy:.4f}, {step / train_seconds:.1f} steps/s")
    if args.framework == "brevitas":
        import brevitas
        version = brevitas.__version__
    else:
        version = torch.__version__
    result = {
        "framework": args.framework,
        "framework_version": version,
        "torch_version": torch.__version__,
        "torch_source": torch_source(),
        "mode": args.mode,
        "weights": args.weights if args.mode == "qat" else None,
        "ste": args.ste if args.mode == "qat" else None,
        "hidden": args.hidden,
        "threads": args.threads,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup_frac": args.warmup_frac,
        "max_steps": args.max_steps,
        "steps": step,
        "train_seconds": train_seconds,
        "steps_per_s": step / train_seconds if train_seconds > 0 else 0.0,
        "test_accuracy": test_accuracy,
        "quantizers": quantizers,
        "seed": args.seed,
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_1m_start": round(load_start, 2),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(ARGS)
