#!/usr/bin/env python3
"""Peer trainer for the convolutional training benchmark: the QAT network of
`qat-hw train --model lenet`, written in plain PyTorch (--framework torch) or Brevitas
(--framework brevitas).

Trains the bias-free LeNet of models/lenet.toml on Fashion-MNIST with the same recipe as the
C++ trainer and prints ONE JSON object on stdout; progress goes to stderr. See README.md in
this folder. Exit status 3: --framework brevitas without Brevitas installed.
"""
import argparse
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=["torch", "brevitas"], required=True)
    p.add_argument("--model", choices=["lenet"], default="lenet", help="network (models/<name>.toml of qat-hw)")
    p.add_argument("--mode", choices=["fp32", "qat"], default="qat")
    p.add_argument("--weights", choices=["ternary", "int4"], default="ternary")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-frac", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ste", choices=["identity", "clipped"], default="identity")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N training steps (0: no limit)")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:N")
    a = p.parse_args(argv)
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

EXIT_NO_BREVITAS = 3


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data (as qat_mlp.py; that script parses its flags on import, so it cannot be imported here)
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
    x = torch.from_numpy(images.reshape(n, 1, 28, 28).astype(np.float32) / np.float32(255.0))
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------

def lenet(conv, linear):
    """models/lenet.toml on 28x28x1: 28 -> 28 -> 14 -> 10 -> 5, no biases.

    conv(cin, cout, kernel, padding) and linear(fin, fout) build the kernel layers, so one
    definition serves FP32, fake-quant and Brevitas. NCHW: the flatten order (C, H, W) differs
    from qat-hw's channels-last (H, W, C) only by a fixed permutation of the first linear
    layer's inputs, which neither the i.i.d. initialisation nor a per-tensor / per-row weight
    scale can tell apart.
    """
    return [conv(1, 16, 5, 2), nn.ReLU(), nn.MaxPool2d(2),
            conv(16, 32, 5, 0), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), linear(32 * 5 * 5, 128), nn.ReLU(), linear(128, 10)]


MODELS = {"lenet": lenet}

QMAX_ACT = 127


def fake_quant_tokens(x):
    """Dynamic absmax INT8, one token per sample: the whole feature map of a sample for a
    convolution (one scale for every patch of the map), the sample's vector for a linear layer.
    Straight-through gradient."""
    amax = x.detach().abs().flatten(1).amax(dim=1).clamp(min=1e-5)
    s = (QMAX_ACT / amax).view(-1, *([1] * (x.dim() - 1)))
    xq = (x * s).round().clamp(-QMAX_ACT, QMAX_ACT) / s
    return x + (xq - x).detach()


class FakeQuantWeight:
    """Weight fake quantization of a kernel seen as rows: out_channels x (cin kh kw) for a
    convolution, out x in for a linear layer (the hardware's layout, up to the order inside a row).

    Ternary: {-1,0,1} x per-tensor mean|W|; INT4: [-7,7] x per-output-row max|W_row|/7.
    Straight-through gradient (identity, or zeroed where the quantizer clips)."""

    def quantized_weight(self):
        w = self.weight
        rows = w.reshape(w.shape[0], -1)
        if self.weights == "ternary":
            qmax = 1
            scale = rows.abs().mean().clamp(min=1e-5)
        else:
            qmax = 7
            scale = (rows.abs().amax(dim=1).clamp(min=1e-5) / qmax).view(-1, *([1] * (w.dim() - 1)))
        wq = (w / scale).round().clamp(-qmax, qmax) * scale
        if self.ste == "clipped":
            keep = (w / scale).abs() <= qmax + 0.5
            w = torch.where(keep, w, w.detach())  # no gradient where the quantizer clips
        return w + (wq - w).detach()


class QatConv2d(FakeQuantWeight, nn.Conv2d):
    def __init__(self, cin, cout, kernel, padding, weights, ste):
        nn.Conv2d.__init__(self, cin, cout, kernel, padding=padding, bias=False)
        self.weights, self.ste = weights, ste

    def forward(self, x):
        # Zero padding after quantization: code 0 is the real value 0, as in the hardware.
        return F.conv2d(fake_quant_tokens(x), self.quantized_weight(), None, self.stride, self.padding)


class QatLinear(FakeQuantWeight, nn.Linear):
    def __init__(self, fin, fout, weights, ste):
        nn.Linear.__init__(self, fin, fout, bias=False)
        self.weights, self.ste = weights, ste

    def forward(self, x):
        return F.linear(fake_quant_tokens(x), self.quantized_weight())


def torch_factories(mode, weights, ste):
    if mode == "fp32":
        return (lambda cin, cout, k, pad: nn.Conv2d(cin, cout, k, padding=pad, bias=False),
                lambda fin, fout: nn.Linear(fin, fout, bias=False))
    return (lambda cin, cout, k, pad: QatConv2d(cin, cout, k, pad, weights, ste),
            lambda fin, fout: QatLinear(fin, fout, weights, ste))


TORCH_QUANTIZERS = {
    "fp32": "none (nn.Conv2d / nn.Linear, fp32)",
    "ternary": "plain PyTorch fake-quant: input of every conv2d and linear layer dynamic absmax INT8 [-127,127], "
               "one token per sample (scale 127/max|x_sample| over the whole feature map); weights ternary "
               "{-1,0,1} x per-tensor mean|W|; STE {ste}",
    "int4": "plain PyTorch fake-quant: input of every conv2d and linear layer dynamic absmax INT8 [-127,127], "
            "one token per sample (scale 127/max|x_sample| over the whole feature map); weights INT4 [-7,7] x "
            "per-output-channel max|W_row|/7; STE {ste}",
}


def brevitas_factories(weights, ste):
    """The closest Brevitas layers: brevitas.nn.QuantConv2d / QuantLinear, each with an
    input quantizer (placed where qat-hw quantizes: before every conv2d and linear layer).

    Inputs: brevitas_examples' Int8DynamicActPerRowFloat (Brevitas' own dynamic quantizer,
      shipped in the wheel; brevitas.quant has none) with narrow_range=True and its statistics
      view set to OverBatchOverTensorView: scale max|x_sample|/127 over the whole sample, codes
      [-127,127], the per-sample token of the recipe. Falls back to the static
      Int8ActPerTensorFloat (narrow range) where that module is missing.
    Weights: as qat_mlp.py -- ternary Int8WeightPerTensorFloat(bit_width=2, narrow_range,
      scaling_stats_op=AVE), int4 Int8WeightPerChannelFloat(bit_width=4, narrow_range); the
      per-channel statistics of a conv kernel run over cin x kh x kw, as the hardware's rows.
    The forward equals the plain fake-quant one except at exact rounding ties (x / (amax/127)
    in float lands just below .5 where x * 127/amax is exactly .5; a pixel map whose maximum is
    254 has such ties): there a code differs by one.
    Brevitas does not detach the scales (gradients also flow through them); `--ste clipped`
    has no stock equivalent and is rejected. No QuantReLU: a ReLU's output is quantized as the
    next layer's input (after the pool, which keeps the map's maximum, so the scale is the same).
    """
    import warnings

    try:
        import brevitas.nn as qnn
    except ImportError as e:
        log(f"--framework brevitas: Brevitas is not installed for {sys.executable} ({e}); "
            "bench/peers/setup_venv.sh installs it")
        sys.exit(EXIT_NO_BREVITAS)

    # Emitted by every quant layer call with return_quant_tensor=False; harmless here.
    warnings.filterwarnings("ignore", message="Could not compute output scale factor")
    from brevitas.core.function_wrapper.shape import OverBatchOverTensorView
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

        # One statistic per sample over every other dimension, broadcast back over the sample.
        aq = Int8DynamicActPerRowFloat.let(
            scaling_stats_input_view_shape_impl=OverBatchOverTensorView,
            dynamic_scaling_broadcastable_fn=lambda x, shape: x.view(shape[0], *([1] * (len(shape) - 1))),
            permute_dims=None, stats_reduce_dim=1, narrow_range=True)
        act_desc = ("inputs brevitas_examples.common.generative.quantizers.Int8DynamicActPerRowFloat("
                    "narrow_range=True, scaling_stats_input_view_shape_impl=OverBatchOverTensorView): dynamic "
                    "per-sample absmax INT8 [-127,127]")
    except ImportError:
        from brevitas.quant.scaled_int import Int8ActPerTensorFloat

        class Int8ActPerTensorNarrow(Int8ActPerTensorFloat):
            narrow_range = True

        aq = Int8ActPerTensorNarrow
        act_desc = ("inputs Int8ActPerTensorFloat(narrow_range=True): STATIC per-tensor INT8 [-127,127] "
                    "(no dynamic quantizer in this Brevitas)")
    if weights == "ternary":
        wq = TernaryWeightPerTensorAbsMean
        w_desc = ("weights Int8WeightPerTensorFloat(bit_width=2, narrow_range=True, scaling_stats_op=AVE): "
                  "{-1,0,1} x per-tensor mean|W|")
    else:
        wq = Int4WeightPerChannelAbsMax
        w_desc = ("weights Int8WeightPerChannelFloat(bit_width=4, narrow_range=True): [-7,7] x "
                  "per-output-channel max|W_row|/7")
    desc = (f"brevitas.nn.QuantConv2d / QuantLinear: {act_desc}; {w_desc}; plain nn.ReLU and nn.MaxPool2d. "
            "Forward as the recipe (one code apart at exact rounding ties); differs in the backward: Brevitas "
            "keeps the gradient through the scales (not detached).")
    conv = lambda cin, cout, k, pad: qnn.QuantConv2d(cin, cout, k, padding=pad, bias=False, weight_quant=wq,
                                                     input_quant=aq, return_quant_tensor=False)
    linear = lambda fin, fout: qnn.QuantLinear(fin, fout, bias=False, weight_quant=wq, input_quant=aq,
                                               return_quant_tensor=False)
    return conv, linear, desc


def build_model(args):
    torch.manual_seed(args.seed)
    if args.framework == "torch":
        conv, linear = torch_factories(args.mode, args.weights, args.ste)
        desc = TORCH_QUANTIZERS["fp32" if args.mode == "fp32" else args.weights].replace("{ste}", args.ste)
    else:
        conv, linear, desc = brevitas_factories(args.weights, args.ste)
    layers = MODELS[args.model](conv, linear)
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            bound = 1.0 / math.sqrt(layer.weight[0].numel())  # fan-in: cin kh kw, or in
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound)
    return nn.Sequential(*layers), desc


def describe(model):
    """The network in one line, e.g. conv5x5x16 p2, relu, maxpool2, ..., linear 800->128."""
    parts = []
    for m in model:
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size
            parts.append(f"conv{k[0]}x{k[1]}x{m.out_channels} p{m.padding[0]}")
        elif isinstance(m, nn.Linear):
            parts.append(f"linear {m.in_features}->{m.out_features}")
        elif isinstance(m, nn.MaxPool2d):
            parts.append(f"maxpool{m.kernel_size}")
        else:
            parts.append(type(m).__name__.lower())
    return ", ".join(parts)


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
    model, quantizers = build_model(args)  # first: a missing Brevitas fails before loading data
    x_train, y_train = (t.to(device) for t in load_split(args.data, "train"))
    x_test, y_test = (t.to(device) for t in load_split(args.data, "t10k"))
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
    log(f"{args.framework} {args.model} {args.mode} {args.weights} threads={args.threads}: "
        f"{steps_per_epoch} steps/epoch, {total} scheduled steps, running {limit}")

    load_start = os.getloadavg()[0]  # other work on the machine skews the timing
    step = 0
    train_seconds = 0.0
    epoch_rates = []
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
        epoch_rates.append(epoch_steps / seconds)
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
        "model": args.model,
        "network": describe(model),
        "mode": args.mode,
        "weights": args.weights if args.mode == "qat" else None,
        "ste": args.ste if args.mode == "qat" else None,
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
        # Per epoch as qat-hw's report.json; the last entry covers a partial epoch under --max-steps.
        "epoch_steps_per_s": epoch_rates,
        "first_epoch_steps_per_s": epoch_rates[0] if epoch_rates else None,
        "last_epoch_steps_per_s": epoch_rates[-1] if epoch_rates else None,
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
