"""Turns the results of bench_all.sh (OUT/results.jsonl, OUT/curve-*.metrics.jsonl, OUT/env.txt)
into a Markdown report with the issue's targets checked: python summarise.py OUT > results.md"""
import json, os, sys

out = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl")) if l.strip()]
res = {r["name"]: r.get("result") for r in rows}
errors = {r["name"]: r["error"] for r in rows if "error" in r}
env = open(os.path.join(out, "env.txt")).read().strip()
p = print


def rate(name):
    r = res.get(name)
    return r["view_images_per_s"] if r else None


def fmt(x, f=None):
    if x is None:
        return "—"
    return (f or ("{:.0f}" if abs(x) >= 100 else "{:.3g}")).format(x)


p("# GPU benchmark results (benches/gpu/bench_all.sh)\n")
p("```\n" + env + "\n```\n")
p("Loss tolerance: the first loss of both sides, from the same initial weights and inputs, agrees to a relative 1e-2 "
  "(bf16: both round activations to 8 bits of mantissa, in kernels that may differ); later steps may drift further.\n")
for m in ("r18", "r50"):
    r0 = res.get(f"{m}/ours") or res.get(f"{m}/pytorch-eager")
    title = f"{r0['arch']}, {r0['size']} px, batch {r0['batch']} × 2 views, {r0['steps']} timed steps" if r0 else m
    p(f"## Step: {title}\n")
    p("| | view-images/s | vs PyTorch eager | first losses |")
    p("|---|---|---|---|")
    eager = rate(f"{m}/pytorch-eager")
    for name in ("ours", "pytorch-eager", "pytorch-compile", "ours-f32", "pytorch-eager-f32"):
        r = res.get(f"{m}/{name}")
        x = rate(f"{m}/{name}")
        ratio = fmt(x / eager, "{:.2f}×") if x and eager else "—"
        losses = ", ".join(f"{v:.5f}" for v in r["first_losses"]) if r else errors.get(f"{m}/{name}", "not run")
        p(f"| {name} | {fmt(x)} | {ratio} | {losses} |")
    checks = []
    for a, b in (("ours", "pytorch-eager"), ("ours-f32", "pytorch-eager-f32")):
        ra, rb = res.get(f"{m}/{a}"), res.get(f"{m}/{b}")
        if ra and rb:
            d = abs(ra["first_losses"][0] - rb["first_losses"][0]) / abs(rb["first_losses"][0])
            checks.append(f"first loss {a} vs {b}: relative difference {d:.1e} ({'within' if d < 1e-2 else 'OUTSIDE'} 1e-2)")
    target = 1.3 if m == "r18" else 1.1
    ours, comp = rate(f"{m}/ours"), rate(f"{m}/pytorch-compile")
    if ours and eager:
        checks.append(f"target ≥ {target}× PyTorch eager: {ours / eager:.2f}× — {'met' if ours / eager >= target else 'NOT met'}")
    if ours and comp:
        checks.append(f"target ≥ torch.compile: {ours / comp:.2f}× — {'met' if ours >= comp else 'NOT met'}")
    elif ours:
        checks.append("torch.compile: " + errors.get(f"{m}/pytorch-compile", "not run"))
    p("\n" + "\n".join(f"- {c}" for c in checks) + "\n")

p("## Speed levers (ours, all on, minus one)\n")
p("| lever | ResNet-18 32 px | ResNet-50 224 px |")
p("|---|---|---|")
for lever, name in (("bf16 autocast", "ours-f32"), ("fused LARS", "ours-no-fused"), ("channels-last", "ours-no-channels-last"),
                    ("cuDNN benchmark", "ours-no-cudnn-benchmark"), ("no host sync per step", "ours-sync-every-step")):
    cells = []
    for m in ("r18", "r50"):
        a, b = rate(f"{m}/ours"), rate(f"{m}/{name}")
        cells.append(f"{a / b:.2f}× ({fmt(b)} → {fmt(a)})" if a and b else "—")
    p(f"| {lever} | {cells[0]} | {cells[1]} |")
p("")

p("## End to end from JPEG files (`directclr train`, image folder, every lever on)\n")
synth = rate("r50/ours")
files = res.get("e2e/jpeg-files")
if files:
    p(f"{files['files']} JPEG files {files['width']}×{files['height']}, {files['bytes'] / 1e6:.0f} MB; synthetic step: "
      f"{fmt(synth)} view-images/s = {fmt(synth / 2 if synth else None)} images/s.\n")
p("| augmentation | images/s (epochs after the first) | vs synthetic | target ≥ 90 % |")
p("|---|---|---|---|")
for aug in ("loader", "device"):
    r = res.get(f"e2e/{aug}")
    if r and synth:
        f = r["images_per_s"] / (synth / 2)
        p(f"| {aug} | {r['images_per_s']:.0f} (per epoch: {', '.join(f'{v:.0f}' for v in r['images_per_s_epochs'])}) | "
          f"{100 * f:.0f} % | {'met' if f >= 0.9 else 'NOT met'} |")
    else:
        p(f"| {aug} | {errors.get(f'e2e/{aug}', 'not run')} | — | — |")
p("")

p("## bf16 vs f32: the same short run (Fashion-MNIST subset, ResNet-18, DirectCLR)\n")
curves = {}
for prec in ("bf16", "off"):
    f = os.path.join(out, f"curve-{prec}.metrics.jsonl")
    if os.path.exists(f):
        curves[prec] = [json.loads(l) for l in open(f) if l.strip()]
if len(curves) == 2:
    steps = {l["step"]: l for l in curves["off"] if l["kind"] == "step"}
    epochs = {l["epoch"]: l for l in curves["off"] if l["kind"] == "epoch"}
    p("| line | loss f32 | loss bf16 | relative difference |")
    p("|---|---|---|---|")
    worst = 0.0
    for l in curves["bf16"]:
        other = steps.get(l["step"]) if l["kind"] == "step" else epochs.get(l["epoch"])
        if other is not None:
            a, b = other["loss"], l["loss"]
            d = abs(a - b) / abs(a)
            worst = max(worst, d)
            where = f"step {l['step']}" if l["kind"] == "step" else f"epoch {l['epoch']} (mean)"
            p(f"| {where} | {a:.4f} | {b:.4f} | {d:.1e} |")
    ep = {prec: [l for l in c if l["kind"] == "epoch"] for prec, c in curves.items()}
    acc = [(e32.get("probe_acc"), e16.get("probe_acc")) for e32, e16 in zip(ep["off"], ep["bf16"])]
    p(f"\nTolerance: every logged window's loss within 5 % of f32's: worst {worst:.1e} — {'met' if worst <= 0.05 else 'NOT met'}. "
      f"Online-probe accuracy per epoch (f32 / bf16): {', '.join(f'{a:.3f}/{b:.3f}' for a, b in acc if a is not None)}.")
else:
    p("not run")
if errors:
    p("\n## Failures\n")
    for k, v in errors.items():
        p(f"- {k}: {v}")
