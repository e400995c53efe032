"""docs/reproduce.md from the committed runs: ``python -m reglab.reproduce.summary [RESULTS_DIR] > docs/reproduce.md``.

One row per claim of the dropout chapter (figs 1.1–1.11, Table 1.1) and of source 000, read from
``RESULTS_DIR/<preset>/results.json`` (default docs/results): the source's value, reglab's, the
verdict and its criterion, and for a disagreement what was checked. A preset whose committed run
predates the claim format (no "budget" field) or is a quick run shows "pending rerun".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from reglab.reproduce.committed import RESULTS_DIR, duration
from reglab.reproduce.framework import FIGURES

#: the chapter's figures and tables in order, and the preset reproducing each (None: no experiment)
CATALOG: list[tuple[str, str | None]] = [
    ("Fig. 1.1", "dropout-1d"), ("Fig. 1.2", "condensation"), ("Fig. 1.3 (a, b)", "teacher-student"),
    ("Fig. 1.3 (c)", "effective-ratio"), ("Fig. 1.4", "r1-mnist"), ("Fig. 1.5", None), ("Fig. 1.6", "escape"),
    ("Fig. 1.7", "sample-size"), ("Fig. 1.8", "dropout-1d"), ("Table 1.1, Fig. 1.9", "dropout-table"),
    ("Fig. 1.10", "l1-l4"), ("Fig. 1.11", "interpolation"), ("Source 000", "seed000"),
]
NO_EXPERIMENT = {"Fig. 1.5": "schematic of why R1 favours condensation (two neurons, two points): no experiment"}

#: where a source contradicts itself, and the reading the presets use
CONTRADICTIONS = [
    "Fig. 1.1/1.8 (one experiment): the captions say learning rate 1e-3, §1.7 says Adam with 1e-4. "
    "dropout-1d states in its results.json \"choices\" which one it uses.",
    "§1.1 writes p for the *keep* probability (η = (1−p)/p with probability p, R1 = (1−p)/(2np)·…), while "
    "the figures' axes are the *drop* probability. reglab's p is always the drop rate: R1 = p/(2n(1−p))·….",
    "Fig. 1.4(b): the caption says it shows R_S^drop(θ, η) and R1(θ), the text says R_S(θ) and R1(θ). "
    "r1-mnist plots R_S, as the text says, and says so in its choices.",
    "Fig. 1.2: the caption puts the weight scatters in panels (d, e, i, j), so the loss panels are (a, f); the "
    "text points to 'Fig. 1.2(a, e)' for the loss curves. condensation follows the caption's layout.",
    "Source 000: the text says weight decay's test loss (0.0254) is slightly *above* the baseline's, its Table 1 "
    "ranks the baseline's test loss 'higher' and weight decay's 'medium' (below). seed000 judges the text's "
    "statement, which carries a number.",
    "Source 000 announces 'four regularization methods' and compares three (weight decay, dropout, stochastic "
    "depth) against a baseline; its §1.3 gives a linear survival rule with p_L = 0.5 while its experiment "
    "skips only Conv1 with probability 0.2. seed000 follows the experiment.",
    "Source 000 §1.3 calls p_l a *drop* probability that grows with depth, then writes p_l = 1 − (l/L)(1 − p_L), "
    "which falls with depth, with p_L the last layer's *keep* probability, and keeps each layer with "
    "probability p_l. reglab reads p_l as the survival probability (regularize.stochastic_depth.rate = 1 − p_L); "
    "the arm 'Stochastic depth conv1 p=0.2' is named by the experiment's skip probability (20%): it keeps "
    "Conv1 with probability 0.8.",
    "Source 000 §1.1 puts λ in twice: L = L_data + λ·L_reg with L_reg = λ/(2n)·Σθ², i.e. λ²/(2n)·Σθ²; its "
    "experiment sets weight_decay = 0.001 in the optimizer (a gradient λ·θ). seed000 follows the experiment; "
    "reglab's l2 is (l2/2)·Σθ² (docs/regularizers.md).",
    "Source 000 §1.2 says dropout's probability is usually 0.5, then defines an input-dependent one, "
    "p(x_i) = 1 − 1/(1 + e^(−α·x_i)), whose test-time output y_i = Σ_{j=1}^{2^m} x_j/p(x_j) / √(2^m − 1) it "
    "gives without defining m or the 2^m terms, while its step 4 says only that every neuron is kept at test; "
    "its experiment drops with a fixed 0.3 and says nothing of scaling. seed000 follows the experiment: a "
    "fixed drop probability, with inverted scaling (torch's nn.Dropout: ÷(1 − p) in training, nothing at "
    "test), a choice it states; the variant's test-time formula is not used.",
    "Definition 1 (effective neuron ratio) writes θ_j^[l] ∈ R^{m_l} and U^[l] = {u_k}_{k=1}^{m_l}, while a "
    "neuron's input weights live in R^{m_(l−1)} (its previous layer's width): a slip; reglab compares the "
    "neurons' input weight vectors, of the previous layer's width (the condensation presets append each "
    "neuron's bias).",
]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") if text not in (None, "") else "—"


def load(results_dir: Path, name: str) -> dict[str, Any] | None:
    """The committed results of `name` in the claim format, or None (absent, old format or quick)."""
    try:
        data = json.loads((results_dir / name / "results.json").read_text())
    except (OSError, ValueError):
        return None
    if data.get("budget") not in ("full", "reduced"):
        return None
    return data


NEEDS_DATA = {"effective-ratio": "CIFAR-10 is not available offline here; the preset runs with --data-dir and "
                                 "is tested on generated stand-in files"}
"""Presets whose only data is not available here, and why (their rows say "not run", not "pending")."""


def rows(results_dir: Path = RESULTS_DIR) -> list[list[str]]:
    """[figure, claim, source, reglab, verdict, criterion / checked, run] for every claim."""
    out, seen = [], set()
    for figure, name in CATALOG:
        if name is None:
            out.append([figure, NO_EXPERIMENT[figure], "—", "—", "no experiment", "—", "—"])
            continue
        data = load(results_dir, name)
        if data is None and name in NEEDS_DATA:
            out.append([figure, f"all claims of {FIGURES.get(name, figure)}", "—", "—", "not run",
                        f"not run here: data ({NEEDS_DATA[name]})", f"`reglab reproduce {name} --data-dir DIR`"])
            continue
        if data is None:
            out.append([figure, f"all claims of {FIGURES.get(name, figure)}", "—", "pending rerun", "pending rerun",
                        "—", f"`reglab reproduce {name}`"])
            continue
        if name in seen:  # a preset covering several figures lists its claims once
            out.append([figure, f"see {FIGURES.get(name, name)} above", "", "", "", "", ""])
            continue
        seen.add(name)
        run = f"[{data['budget']}](results/{name}/README.md), {duration(data.get('seconds', 0))} on " \
              f"{data.get('device', 'cpu')}"
        for c in data["claims"]:
            why = c.get("criterion", "") + (f". Checked: {c['checked']}" if c.get("checked") else "")
            verdict = c["verdict"]
            if (name, c["claim"]) in SUPERSEDED_VERDICTS:
                verdict, reason = SUPERSEDED_VERDICTS[name, c["claim"]]
                why = f"Committed verdict {c['verdict']!r}, superseded: {reason}. Committed criterion: {why}"
            out.append([figure, c["claim"], c.get("source", ""), c.get("reglab", c.get("measured", "")),
                        verdict, why, run])
    return out


CHANGED_SINCE_RUN = {
    "effective-ratio": "its choices now also state the loss, schedule, weight decay and data preprocessing it "
                       "used (what it runs is unchanged); its choices now also state ResNet-18's CIFAR form "
                       "(audit of 2026-11-28)",
    "r1-mnist": "its absolute accuracies (79%, > 88%) are now judged only on MNIST's first 1000 images; on mnist-5k "
                "they are not run; its choices now also state the input standardisation and which loss fig. (b) "
                "plots; they now also say how its inputs, initialisation and output bias differ from l1-l4's "
                "(audit of 2026-11-28)",
}
"""Presets whose code changed since their committed run, and how; remove an entry when its run is redone."""

_ABSOLUTE = ("absolute accuracies are now judged only on MNIST's first 1000 images, which are not available here "
             "(the committed run used mnist-5k's)")
SUPERSEDED_VERDICTS = {
    ("r1-mnist", "R_S alone reaches only about 79%"): ("not run", _ABSOLUTE),
    ("r1-mnist", "R_drop and R_S + R1 exceed 88%, well above R_S alone"): ("not run", _ABSOLUTE),
}
"""Committed claims whose criterion or arms changed since their run (`CHANGED_SINCE_RUN`): (preset, claim) -> the
verdict to count today and why. Its row keeps the committed numbers and verdict in the text; remove an
entry when its run is redone."""


def code_line(code: dict[str, Any]) -> str:
    """The code a committed run ran: its commit, "+ local changes" and the sources' hash where the
    checkout had changes (the hash then tells which), or "unknown"."""
    commit = code.get("git_commit")
    if not commit:
        return "commit unknown"
    dirty = f" + local changes (sources sha256 {str(code.get('sources_sha256'))[:12]})" if code.get("git_dirty") else ""
    return f"commit {commit[:10]}{dirty}"


def runs(results_dir: Path = RESULTS_DIR) -> list[str]:
    """One line per committed run: preset, budget (and what was cut), time, code version, and what changed
    in the preset since (`CHANGED_SINCE_RUN`)."""
    lines = []
    for name in dict.fromkeys(n for _, n in CATALOG if n is not None):
        data = load(results_dir, name)
        if data is None:
            lines.append(f"- `{name}`: " + (f"not run here: data ({NEEDS_DATA[name]})" if name in NEEDS_DATA
                                             else "pending rerun"))
            continue
        cut = f" — {data['reduced']}" if data.get("reduced") else ""
        took, device = duration(data.get("seconds", 0)), data.get("device", "?")
        changed = f"; **changed since this run**: {CHANGED_SINCE_RUN[name]}" if name in CHANGED_SINCE_RUN else ""
        lines.append(f"- `{name}`: {data['budget']}{cut}; {took} on {device}, {code_line(data.get('code') or {})}; "
                     f"command `{data.get('command', '?')}`{changed}")
    return lines


def markdown(results_dir: Path = RESULTS_DIR) -> str:
    table = rows(results_dir)
    counts = {v: sum(r[4] == v for r in table)
              for v in ("agree", "disagree", "not run", "pending rerun", "no experiment")}
    lines = [
        "# Reproducing the sources",
        "",
        "Generated by `python -m reglab.reproduce.summary > docs/reproduce.md` from docs/results/*/results.json; "
        "do not edit by hand. Sources: the dropout chapter (source 004: \"Dropout 的隐式正则化\" of the book "
        "理解深度学习, 2023, which presents Zhang & Xu 2022, *Implicit regularization of dropout*, arXiv:2207.05952; "
        "figs 1.1–1.11 and Table 1.1 are the chapter's numbering; results stored before 2026-11-28 name the "
        "paper as their source) and source 000 (an MNIST DeeperCNN comparison of weight decay, dropout and "
        "stochastic depth).",
        "",
        "Each row is one claim: the source's value, reglab's (mean and 95% Student-t interval over ≥ 3 seeds for "
        "comparisons), the verdict and the checkable criterion behind it. *reduced* runs use a stated smaller budget "
        "than the preset's full setting (their README says which and gives the full command); *not run* means the "
        "data (CIFAR, Multi30k, full MNIST for absolute numbers) is not available here; *pending rerun* means the "
        "committed run predates the source-faithful preset. Each preset's settings, the choices made where the "
        "source is silent (results.json \"choices\") and the code version are in docs/results/<preset>/. The run "
        "column gives each row's budget, time and device; a reduced run's verdicts describe that budget, not the "
        "source's full setting (`tools/reproduce_gpu.sh` and `tools/reproduce_theory_gpu.sh` run the full ones "
        "on a GPU).",
        "",
        f"Totals: {counts['agree']} agree, {counts['disagree']} disagree, {counts['not run']} not run, "
        f"{counts['pending rerun']} pending rerun; {counts['no experiment']} figure without an experiment.",
        "",
        "| figure | claim | source | reglab | verdict | criterion / checked | run |",
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(_cell(c) for c in r) + " |" for r in table),
        "",
        "## Runs behind the table",
        "",
        *runs(results_dir),
        "",
        "A run's results.json records its sources' SHA-256 (`reglab.provenance.sources_sha256`). Until commit "
        "67bc1fb that hash covered reglab's `*.py` files only; since then it also covers the preset TOML files, "
        "so a hash recorded earlier is compared with the `*.py`-only hash of the same tree.",
        "",
        "## How directions are counted",
        "",
        "Rows that count \"directions covering the neurons (cos > 0.95, exact cover)\" use the source's Definition 1 "
        "(the effective neuron number m_eff) with two readings of its own. The source takes the minimum over *all* "
        "sets U of vectors; reglab picks U among the neurons' own unit input weights (a minimum set cover, solved "
        "exactly), which is an upper bound of the source's m_eff: with U free the minimum lies between the cover at "
        "the doubled angle (cos > 0.805) and the cover at 0.95 (docs/theory.md, \"Effective ratio\"). And the "
        "source writes the condition as a dot product u·θ > 0.95 without normalising either vector; reglab reads it "
        "as the cosine similarity of unit vectors, the only reading under which 0.95 is scale-free.",
        "",
        "## Where a source contradicts itself",
        "",
        *(f"- {c}" for c in CONTRADICTIONS),
        "",
        "Claims of the chapter no preset checks: Fig. 1.2 (a, e), that with dropout the loss goes through no "
        "visible plateau (so dropout trains faster than a small initialisation); Fig. 1.9 (a, b), that the "
        "training loss is near zero with and without dropout.",
        "",
        "## Commands",
        "",
        "`reglab reproduce --list` shows every preset, the figure it reproduces and the time of its committed run. "
        "`reglab reproduce <name>` runs the full setting, `--reduced` the stated CPU budget where a preset has one, "
        "`--quick` a seconds-long smoke version; `--device cuda` and `--data-dir <folder>` (MNIST IDX, CIFAR binary "
        "files) as needed.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the table of the results folder given (default docs/results); a folder without any
    results.json is refused (a mistyped path must not print an empty table over docs/reproduce.md)."""
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else RESULTS_DIR
    if not any(folder.glob("*/results.json")):
        raise SystemExit(f"error: {folder}: no reproduction results (<preset>/results.json) there; "
                         "usage: python -m reglab.reproduce.summary [RESULTS_DIR] > docs/reproduce.md")
    sys.stdout.write(markdown(folder))


if __name__ == "__main__":
    main()
