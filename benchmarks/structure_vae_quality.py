"""Benchmark: how good are the structures the trained structure VAE decodes?

For validation clusters (``--per-type`` per type, stored PDF draw 0):
decode the posterior mean ``q(z | L, c)`` (reconstruction: the best the
decoder can do) and the conditional-prior mean ``p(z | c)`` (what the
PDF alone implies, before diffusion); recover coordinates by aDGP from
the decoder's positions (atom count as the generator takes it,
:meth:`StructureVAE.count_atoms` with the condition; no relaxation, but
template clusters are scaled to the data's nearest-neighbour distance as
``propose`` scales them); report the atom-count accuracy, the decoded
structure type (template decoder), the rms error of all interatomic
distances (Å; canonical order) and the Rw of the decoded cluster's PDF
against the stored PDF (free scale, unrefined), beside the Rw of the
true cluster itself given the same way (the floor: the stored PDFs
carry noise and their own Biso, Qdamp and delta2).

Run from the repository root after training stages 1 and 2::

    python benchmarks/structure_vae_quality.py --run runs/mmnp-v2

Writes ``benchmarks/results/structure_vae_quality.json``.
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "structure_vae_quality.json"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/mmnp-v2")
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument("--per-type", type=int, default=6)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm.atomic import write_json
    from ase import Atoms

    from diffpy_cbldm.clusters.laplacian import (
        laplacian,
        positions_from_laplacian,
    )
    from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
    from diffpy_cbldm.clusters.order import canonical_order
    from diffpy_cbldm.pdf.peaks import first_peak
    from diffpy_cbldm.conventions import model_input
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import case_data, select_cases
    from diffpy_cbldm.generator import (
        candidate_rw,
        match_first_peak,
        merge_close_atoms,
    )
    from diffpy_cbldm.model import CbLDMConfig, build_modules
    from diffpy_cbldm.training.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    run = Path(args.run)
    cfg = CbLDMConfig.from_dict(
        json.loads((run / "config.json").read_text())["model"]
    )
    nets = build_modules(cfg, ["condition_vae", "structure_vae"])
    for name, stage in (
        ("condition_vae", "condition"),
        ("structure_vae", "structure"),
    ):
        state = load_checkpoint(run / stage / "best.pt")
        nets[name].load_state_dict(state["weights"])
        nets[name].eval()
    cvae, svae = nets["condition_vae"], nets["structure_vae"]
    sigma = cfg.conventions.sigma
    ds = open_dataset(args.data)
    rows = select_cases(ds, "val", args.per_type, seed=0)
    out = {"posterior": [], "prior": []}
    for row in rows:
        data, sample = case_data(ds, int(row))
        x_true = sample.positions
        n = len(x_true)
        L = torch.as_tensor(laplacian(x_true, sigma))[None].float()
        g = torch.as_tensor(model_input(data.r, data.g, cfg.conventions))[
            None
        ].float()
        with torch.no_grad():
            z_c = cvae.condition(g)
            mu, _ = svae.encode(L, z_c)
            mu_p, _ = svae.prior(z_c)
        d_true = np.linalg.norm(x_true[:, None] - x_true[None], axis=-1)
        # The floor: the true cluster itself as a candidate.
        truth_rw = float(candidate_rw([Atoms(f"Au{n}", x_true)], data)[0])
        for key, z in (("posterior", mu), ("prior", mu_p)):
            with torch.no_grad():
                k = int(svae.count_atoms(z, z_c).clamp(min=2))
                Lhat = svae.decode(z, atoms=torch.tensor([k]))[0].double()
                start = svae.decode_positions(z, torch.tensor([k]))
                start = start[0, :k].double().numpy()
                stype = None
                if svae.config.decoder == "template":
                    stype = STRUCTURE_TYPES[int(svae.structure_types(z))]
            x, info = positions_from_laplacian(
                Lhat.numpy(), sigma, n_atoms=k, init=start
            )
            x, merged = merge_close_atoms(x)
            if stype is not None:
                # As propose does for template clusters: scale to the
                # data's first peak (no relaxation).
                peak = first_peak(data.r, data.g)
                x = match_first_peak([x], data, peak, sample.element)[0]
            rw = float(candidate_rw([Atoms(f"Au{len(x)}", x)], data)[0])
            rec = {
                "row": int(row),
                "type": sample.structure_type,
                "natoms": n,
                "decoded_natoms": k,
                "merged_atoms": merged,
                "rw": rw,
                "decoded_type": stype,
                "truth_rw": truth_rw,
            }
            if stype is not None:
                with torch.no_grad():
                    field = float(svae.decoder.expected_counts(z)[0])
                rec["field_natoms"] = field
            if len(x) == n:
                # The template decoder orders atoms by occupancy logit:
                # compare distance matrices in the canonical order.
                if stype is not None:
                    x = x[canonical_order(x)]
                d = np.linalg.norm(x[:, None] - x[None], axis=-1)
                rec["rms_distance_error"] = float(
                    np.sqrt(np.mean((d - d_true) ** 2))
                )
            out[key].append(rec)
    print(f"{len(rows)} validation clusters")
    print(
        f"{'latent':<10} {'type':<12} {'N exact':>7} {'N±10%':>6} "
        f"{'rms dd Å':>8} {'med. Rw':>7} {'type ok':>7} {'truth Rw':>8}"
    )
    summary = {}
    for key, recs in out.items():
        types = sorted({r["type"] for r in recs}) + ["all"]
        for t in types:
            grp = [r for r in recs if t in ("all", r["type"])]
            exact = np.mean([r["decoded_natoms"] == r["natoms"] for r in grp])
            close = np.mean(
                [
                    abs(r["decoded_natoms"] - r["natoms"]) <= 0.1 * r["natoms"]
                    for r in grp
                ]
            )
            dd = [
                r["rms_distance_error"]
                for r in grp
                if "rms_distance_error" in r
            ]
            med_dd = float(np.median(dd)) if dd else float("nan")
            med_rw = float(np.median([r["rw"] for r in grp]))
            truth = float(np.median([r["truth_rw"] for r in grp]))
            typed = [r for r in grp if r["decoded_type"] is not None]
            type_ok = (
                float(np.mean([r["decoded_type"] == r["type"] for r in typed]))
                if typed
                else float("nan")
            )
            summary.setdefault(key, {})[t] = {
                "count_exact": float(exact),
                "count_within_10pct": float(close),
                "median_rms_distance_error": med_dd,
                "median_rw": med_rw,
                "median_truth_rw": truth,
                "type_ok": type_ok,
            }
            print(
                f"{key:<10} {t:<12} {exact:>7.2f} {close:>6.2f} "
                f"{med_dd:>8.2f} {med_rw:>7.3f} {type_ok:>7.2f} {truth:>8.3f}"
            )
    path = Path(args.out)
    write_json(
        path,
        {
            "args": vars(args),
            "summary": summary,
            "records": out,
            "load_average": list(os.getloadavg()),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
