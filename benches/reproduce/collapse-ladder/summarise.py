#!/usr/bin/env python3
"""The collapse ladder's table, from the `results.json` that `directclr reproduce` wrote for each
rung × condition under OUT (run.sh). Standard library only.

Per rung, condition and head: effective rank of r (mean ± sample sd over seeds), r's collapsed
dimensions at λ/λ₁ < 1e-4 and < 1e-6 (from the covariance eigenvalues of the L2-normalised r of
the first 2,000 test images), z's at 1e-4, the linear-probe top-1 and the mean training loss of
the first and the last epoch (toy: first step → mean of the last 10 % of measurements). A head
whose last-epoch loss is not below 0.9 × ln(2N − 1) never left chance (the theory lab's
criterion): an ordering involving it is reported as no evidence. Per rung and condition, the ordering of the effective ranks of r between the no-projector
head and each other head: "paper" when the no-projector r is the lower (more collapsed, as
Figures 7b and 9), "reversed" when it is the higher, with the difference Δ (other − no
projector); "(within spread)" when |Δ| is smaller than the larger sample sd of the two (three
seeds) — such a gap is not evidence either way. The last column gives the collapsed counts of r
at 1e-6 per head: the tail of the spectrum, which the effective rank barely weighs; the next how
many coordinates of r have a variance below 1e-6 λ₁ (dead units: collapse along the axes), where
the evaluation recorded it ("–" for evaluations written before directclr 7e0ec55).

Usage: summarise.py OUT
"""

import json
import math
import os
import statistics
import sys

RUNGS = ["linear", "deep_linear", "mlp", "conv", "cnn", "residual_cnn_gamma1", "residual_cnn",
         "resnet18", "cnn_signed_r", "residual_cnn_signed_r"]
CONDITIONS = ["authors", "strong", "weak"]
HEADS = ["no-projector", "linear-projector", "directclr"]


def collapsed(eigenvalues, threshold):
    top = max(eigenvalues)
    return sum(1 for v in eigenvalues if v < threshold * top)


def epoch_losses(folder):
    """The mean training loss of the first and of the last epoch, or None."""
    losses = []
    try:
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            for line in f:
                m = json.loads(line)
                if m.get("kind") == "epoch":
                    losses.append(m["loss"])
    except OSError:
        return None
    return (losses[0], losses[-1]) if losses else None


# SimCLR's chance level: ln(2N − 1) for N = 128 (2N − 1 candidates per anchor). A run whose last
# epoch's loss is not below 0.9 × chance never left it (the theory lab's criterion): its r is
# little more than its initialisation.
CHANCE = math.log(255)
LEFT_CHANCE = 0.9 * CHANCE


def mean_sd(values):
    if not values:
        return None, None
    m = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return m, sd


def fmt(values, digits=2):
    m, sd = mean_sd(values)
    if m is None:
        return "–"
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


TOY_HEADS = {"none": "no-projector", "linear": "linear-projector", "direct-clr": "directclr"}
TOY_CONDITIONS = {"strong-augmentation": "toy strong (Sec. 4)",
                  "implicit-regularization": "toy implicit (Sec. 5)"}


def untrained(h):
    return any(last >= LEFT_CHANCE for last in h["loss"])


def pair(np_stat, other_stat):
    """The paper's ordering between the no-projector r and one other head's r: "paper" when the
    no-projector r has the lower effective rank, "reversed" when the higher; "(within spread)"
    when the gap is below the larger sample sd of the two (three seeds or more)."""
    (np_m, np_sd, n), (m, sd, _) = np_stat, other_stat
    word = "paper" if np_m < m else "reversed"
    note = " (within spread)" if n > 1 and abs(np_m - m) < max(np_sd, sd) else ""
    return f"{word}{note} ({m - np_m:+.2f})"


def toy(out, rows, verdicts):
    """Rung 1: the theory lab's `summary.json` (one seed; 16-d r, so counts are of 16)."""
    path = os.path.join(out, "toy", "summary.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        runs = json.load(f)["runs"]
    for mech, cond in TOY_CONDITIONS.items():
        by_head = {}
        for r in runs:
            if r["mechanism"] != mech or r["head"] not in TOY_HEADS:
                continue
            head = TOY_HEADS[r["head"]]
            by_head[head] = r["r_effective_rank"][1]
            rows.append(
                f"| toy (L = {r['layers']}, 16-d) | {cond} | {head} | 1 | "
                f"{r['r_effective_rank'][1]:.2f} | {r['r_collapsed_1e4'][1]} | "
                f"{r['r_collapsed_1e6'][1]} | – | – | "
                f"{r['initial_loss']:.3f} → {r['final_loss']:.3f} |"
            )
        if all(h in by_head for h in HEADS):
            st = {h: (by_head[h], 0.0, 1) for h in HEADS}
            verdicts.append(
                f"| toy | {cond} | {by_head['no-projector']:.2f} | "
                f"{by_head['linear-projector']:.2f} | {by_head['directclr']:.2f} | "
                f"{pair(st['no-projector'], st['linear-projector'])} | "
                f"{pair(st['no-projector'], st['directclr'])} | – | – |"
            )


def main(out):
    rows = []
    verdicts = []
    toy(out, rows, verdicts)
    for rung in RUNGS:
        for cond in CONDITIONS:
            path = os.path.join(out, f"{rung}-{cond}", "results.json")
            if not os.path.isfile(path):
                continue
            with open(path) as f:
                results = json.load(f)
            by_head = {}
            for r in results:
                ev_r = r["spectrum_r"]["eigenvalues"]
                ev_z = r["spectrum_z"]["eigenvalues"]
                folder = os.path.join(out, f"{rung}-{cond}", "runs", r["folder"])
                h = by_head.setdefault(r["name"], {k: [] for k in
                                                   ("erank", "c4", "c6", "dead", "z4", "probe",
                                                    "first", "loss")})
                h["erank"].append(r["spectrum_r"]["metrics"]["effective_rank"])
                h["c4"].append(collapsed(ev_r, 1e-4))
                h["c6"].append(collapsed(ev_r, 1e-6))
                # Coordinates of r with variance below 1e-6 λ₁ (dead units), where the
                # evaluation recorded them (directclr 7e0ec55 on; older eval.json files lack it).
                dead = r["spectrum_r"]["metrics"].get("constant_coordinates")
                if dead is not None and r["spectrum_r"]["metrics"]["collapse_threshold"] == 1e-6:
                    h["dead"].append(dead)
                h["z4"].append(collapsed(ev_z, 1e-4))
                h["probe"].append(r["probe"]["best_top1"])
                losses = epoch_losses(folder)
                if losses is not None:
                    h["first"].append(losses[0])
                    h["loss"].append(losses[1])
            for head in HEADS:
                if head not in by_head:
                    continue
                h = by_head[head]
                rows.append(
                    f"| {rung} | {cond} | {head} | {len(h['erank'])} | {fmt(h['erank'])} | "
                    f"{fmt(h['c4'], 1)} | {fmt(h['c6'], 1)} | {fmt(h['z4'], 1)} | "
                    f"{fmt(h['probe'])} | {fmt(h['first'], 3)} → {fmt(h['loss'], 3)} |"
                )
            if all(head in by_head for head in HEADS):
                st = {}
                for head in HEADS:
                    m, sd = mean_sd(by_head[head]["erank"])
                    st[head] = (m, sd, len(by_head[head]["erank"]))
                def verdict(other):
                    idle = [h for h in ("no-projector", other) if untrained(by_head[h])]
                    if idle:
                        return ("no evidence: " + " and ".join(idle)
                                + " never left chance")
                    return pair(st["no-projector"], st[other])

                c6 = " / ".join(fmt(by_head[h]["c6"], 1) for h in HEADS)
                # Only where every seed's evaluation recorded it.
                dead = " / ".join(
                    fmt(by_head[h]["dead"], 1)
                    if len(by_head[h]["dead"]) == len(by_head[h]["c6"]) else "–"
                    for h in HEADS)
                verdicts.append(
                    f"| {rung} | {cond} | {fmt(by_head['no-projector']['erank'])} | "
                    f"{fmt(by_head['linear-projector']['erank'])} | "
                    f"{fmt(by_head['directclr']['erank'])} | "
                    f"{verdict('linear-projector')} | {verdict('directclr')} | {c6} | {dead} |"
                )
    print("| rung | augmentations | head | seeds | effective rank of r | r collapsed 1e-4 | "
          "r collapsed 1e-6 | z collapsed 1e-4 | probe top-1 % | loss, epoch 1 → last |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print()
    print("| rung | augmentations | eff. rank r: no projector | linear projector | DirectCLR | "
          "ordering vs linear projector (Δ) | ordering vs DirectCLR (Δ) | "
          "r collapsed 1e-6: none / linear / DirectCLR | of which dead coordinates |")
    print("|---|---|---:|---:|---:|---|---|---|---|")
    print("\n".join(verdicts))
    print(f"\nChance-level loss ln(255) = {CHANCE:.3f}; left chance below {LEFT_CHANCE:.3f}.")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
