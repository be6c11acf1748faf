#!/usr/bin/env python3
"""Joins the part files bench/run wrote (OUT/<part>.json) into OUT/benchmarks.json and the
tables of OUT/benchmarks.md, with each figure's ratio against its peer of the same run.

    python3 bench/summarize.py OUT_DIR
"""
import json
import os
import platform
import sys

PARTS = ["peers", "cnn_peers", "contention", "targets", "verify", "cnn_verify", "sim", "sweep", "synth"]
FILES = {"peers": "train_vs_peers.json", "cnn_peers": "cnn_vs_peers.json"}


def load(out, part):
    path = os.path.join(out, FILES.get(part, part + ".json"))
    return json.load(open(path)) if os.path.exists(path) else None


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def peers_md(p, digits=0):
    lines = ["| round | side | mode | weights | threads | steps/s | first / last epoch | test accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for r in p["rows"]:
        if "error" in r:
            lines.append(f"| {r.get('round', 1)} | {r['side']} | failed: {r['error'][:60]} | | | | | |")
            continue
        epochs = f"{r['first_epoch']:.{digits}f} / {r['last_epoch']:.{digits}f}" if r.get("first_epoch") else ""
        lines.append(f"| {r.get('round', 1)} | {r['side']} | {r['mode']} | {r['weights']} | {r['threads']} | "
                     f"{r['steps_per_s']:.{digits}f} | {epochs} | {100 * r['accuracy']:.2f}% |")
    return lines + [""] + p["summary"]


def cnn_peers_md(p):
    # A convolutional step takes tens of milliseconds: one decimal keeps the rates apart.
    return [f"Model {p['model']}, {p['epochs']} epochs.", ""] + peers_md(p, digits=1)


def contention_md(c):
    lines = ["| --threads | alone steps/s | beside a CPU-bound process | (of alone) | two trainings together | (of one alone) |",
             "|---|---|---|---|---|---|"]
    for name, r in (("auto", c["auto"]), (str(c["fixed"]["threads"]), c["fixed"])):
        lines.append(f"| {name} | {r['alone']:.0f} | {r['busy']:.0f} | {r['busy'] / r['alone']:.0%} | "
                     f"{r['pair_total']:.0f} | {r['pair_total'] / r['alone']:.0%} |")
    a = c["auto"]
    lines += ["", f"QAT of ternary-asic, {c['epochs']} epochs, {c['cpus']} CPUs. Idle run with --threads auto: first "
                  f"epoch {a['first_epoch']:.0f}, last {a['last_epoch']:.0f} steps/s "
                  f"({a['last_epoch'] / a['first_epoch']:.0%})."]
    return lines


def targets_md(t):
    lines = ["| target | QAT steps/s | of the built-in target of its weight format |", "|---|---|---|"]
    for r in t["rows"]:
        ratio = f"{r['of_builtin']:.0%}" if "of_builtin" in r else "(reference)"
        lines.append(f"| {r['target']} | {r['qat_steps_per_s']:.0f} | {ratio} |")
    return lines + ["", f"train_step_bench, {t['threads']} thread, 784-256-256-10, batch 256, best of 7 trials of "
                        f"{t['steps']} steps."]


def verify_md(v):
    """Rows of qat-hw verify reports; rows with a model (part cnn_verify) name it and the cycle check."""
    models = any("model" in r for r in v["rows"])
    head = (["model"] if models else []) + ["target", "images", "wall s", "jobs", "int", "SystemC", "RTL", "HLS",
                                            "RTL cycles/s", "agree"] + (["SystemC = RTL cycles"] if models else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in v["rows"]:
        j, e = r["report"], r["report"]["engines"]
        rate = lambda n: f"{e[n]['images_per_s']:.0f}/s" if n in e else "-"
        cells = ([r["model"]] if models else []) + [
            r["target"], str(j["samples"]), f"{r['wall_s']:.1f}", str(j.get("jobs", 1)), rate("int"),
            rate("systemc"), rate("rtl"), rate("hls"), f"{e.get('rtl', {}).get('cycles_per_s', 0) / 1e6:.2f} M",
            "yes" if j["agree"] else "NO"]
        if models:
            d = j.get("cycles", {}).get("largest_relative_difference")
            cells.append("-" if d is None else ("yes" if d == 0 else "NO"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + ["", "Engine rates are per worker (images/s of the engine's own time); wall s is the whole "
                        "command, engines in parallel worker processes; every layer of every image compared."]


def sim_md(s):
    lines = ["| target | integer engine s | images/s | SystemC s | images/s | SystemC / int time |",
             "|---|---|---|---|---|---|"]
    for r in s["rows"]:
        lines.append(f"| {r['target']} | {r['int_wall_s']:.2f} | {r['int_images_per_s']:.0f} | "
                     f"{r['systemc_wall_s']:.2f} | {r['systemc']['sim_images_per_s']:.0f} | "
                     f"{r['systemc_wall_s'] / r['int_wall_s']:.1f}x |")
    return lines


def sweep_md(s):
    pts = s["points"] if isinstance(s["points"], list) else s["points"].get("points", [])
    sums = {}
    for p in pts:
        for k in ("train_seconds", "sim_seconds", "synth_seconds", "verify_seconds"):
            if isinstance(p.get(k), (int, float)):
                sums[k] = sums.get(k, 0.0) + p[k]
    lines = ["| | |", "| --- | --- |", f"| wall time, every cache empty | {s['wall_s']:.0f} s |",
             f"| points | {len(pts)} |"]
    for k, v in sums.items():
        lines.append(f"| {k.replace('_', ' ')}, summed over points | {v:.0f} s |")
    verified = sum(1 for p in pts if p.get("status") == "done")
    lines.append(f"| points done (verified bit-exact) | {verified} of {len(pts)} |")
    return lines


def synth_md(s):
    by = {}
    for r in s["rows"]:
        by.setdefault(r["target"], {})[r["mode"]] = r
    lines = ["| datapath | flattened cells | s | module by module cells | s | difference | flip-flops equal |",
             "|---|---|---|---|---|---|---|"]
    worst, t_flat, t_mod = 0.0, 0.0, 0.0
    for name, m in by.items():
        if "flatten" not in m or "by-module" not in m:
            continue
        f, b = m["flatten"], m["by-module"]
        d = b["cells"] / f["cells"] - 1
        worst = max(worst, abs(d))
        t_flat += f["wall_s"]
        t_mod += b["wall_s"]
        lines.append(f"| {name} | {f['cells']} | {f['wall_s']:.1f} | {b['cells']} | {b['wall_s']:.1f} | {d:+.1%} | "
                     f"{'yes' if f['flip_flops'] == b['flip_flops'] else 'no'} |")
    return lines + ["", f"Largest difference {worst:.1%}; time {t_flat:.0f} s flattened against {t_mod:.0f} s module by "
                        f"module ({t_flat / t_mod:.1f}x)." if t_mod else ""]


def main():
    out = sys.argv[1]
    result = {"machine": {"cpu": cpu_name(), "cpus": os.cpu_count()}}
    md = [f"# Benchmarks ({cpu_name()}, {os.cpu_count()} CPUs)", ""]
    render = {"peers": peers_md, "cnn_peers": cnn_peers_md, "contention": contention_md, "targets": targets_md,
              "verify": verify_md, "cnn_verify": verify_md, "sim": sim_md, "sweep": sweep_md, "synth": synth_md}
    for part in PARTS:
        data = load(out, part)
        if data is None:
            continue
        result[part] = data
        md += [f"## {part}", ""] + render[part](data) + [""]
    for name, text in (("benchmarks.json", json.dumps(result, indent=1) + "\n"), ("benchmarks.md", "\n".join(md))):
        tmp = os.path.join(out, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out, name))
    print("\n".join(md))


if __name__ == "__main__":
    main()
