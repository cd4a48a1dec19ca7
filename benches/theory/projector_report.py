"""Turns the runs of benches/theory/projector.sh (one JSON line each) into its Markdown tables:
the best-of-REPEATS times of seed 0 per configuration (with measurements every 10 steps, and
training only) and their ratio, and the agreement of the seed means of the final loss and of r's
final effective rank over the runs with measurements (tolerance: 4 pooled standard errors of the
difference of the means; see projector.sh). Prints "all agree" last when every check passes.

Usage: projector_report.py RUNS_JSONL REPEATS SEEDS MACHINE_LINE
"""
import json
import math
import sys

path, repeats, seeds, machine = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
runs = [json.loads(line) for line in open(path)]
mechanisms = list(dict.fromkeys(r["mechanism"] for r in runs))
print("Linear head (z = W_p r), 10,000 steps, batch 128, f32, one thread")
print(machine)
print()
print(f"Time, best of {repeats} (seed 0):")
print()
print("| configuration | measured | PyTorch (s) | directclr train (s) | directclr whole command (s) | ratio (train) |")
print("|---|---|---|---|---|---|")
ok = True
checks = []
for m in mechanisms:
    def of(impl, log_every=10):
        return [r for r in runs if r["impl"] == impl and r["mechanism"] == m and r["log_every"] == log_every]
    for log_every, label in [(10, "every 10 steps"), (10_000, "start and end only")]:
        if not of("pytorch", log_every):
            continue
        t = min(r["seconds"] for r in of("pytorch", log_every) if r["seed"] == 0)
        d = min(r["seconds"] for r in of("directclr", log_every) if r["seed"] == 0)
        w = min(r["wall"] for r in of("directclr", log_every) if r["seed"] == 0)
        print(f"| {m}, linear | {label} | {t:.2f} | {d:.3f} | {w:.3f} | {t / d:.1f}x |")
    for key in ["final_loss", "r_effective_rank_end"]:
        per_seed = {impl: [next(r[key] for r in of(impl) if r["seed"] == s) for s in range(seeds)]
                    for impl in ["directclr", "pytorch"]}
        means = {k: sum(v) / seeds for k, v in per_seed.items()}
        pooled = sum(sum((x - means[k]) ** 2 for x in v) for k, v in per_seed.items()) / (2 * seeds - 2)
        tol = 4 * math.sqrt(pooled) * math.sqrt(2 / seeds)
        diff = abs(means["directclr"] - means["pytorch"])
        ok = ok and diff <= tol
        spread = {k: f"{min(v):.4g}–{max(v):.4g}" for k, v in per_seed.items()}
        checks.append(f"| {m} | {key} | {means['directclr']:.4g} ({spread['directclr']}) | "
                      f"{means['pytorch']:.4g} ({spread['pytorch']}) | {diff:.3g} | {tol:.3g} | "
                      f"{'agree' if diff <= tol else 'DIFFER'} |")
print()
print(f"Agreement, means (range) over seeds 0..{seeds - 1}; tolerance 4 pooled standard errors of the difference:")
print()
print("| mechanism | quantity | directclr | PyTorch | difference | tolerance | verdict |")
print("|---|---|---|---|---|---|---|")
print("\n".join(checks))
print()
print("all agree" if ok else "SOME DIFFER")
