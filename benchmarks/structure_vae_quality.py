"""Benchmark: how good are the structures the trained structure VAE decodes?

For validation clusters (``--per-type`` per type, stored PDF draw 0):
decode the posterior mean ``q(z | L, c)`` (reconstruction: the best the
decoder can do) and the conditional-prior mean ``p(z | c)`` (what the
PDF alone implies, before diffusion); recover coordinates by aDGP from
the decoder's positions (atom count as the generator takes it,
:meth:`StructureVAE.count_atoms` with the condition; no relaxation);
report the atom-count accuracy, the rms error of all interatomic
distances (Å) and the Rw of the decoded cluster's PDF against the stored
PDF (free scale, unrefined).

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
    parser.add_argument("--run", default="runs/mmnp-v1")
    parser.add_argument("--data", default="data/mmnp-v1.h5")
    parser.add_argument("--per-type", type=int, default=6)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm.atomic import atomic_path
    from ase import Atoms

    from diffpy_cbldm.clusters.laplacian import (
        laplacian,
        positions_from_laplacian,
    )
    from diffpy_cbldm.conventions import model_input
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import _case_data, select_cases
    from diffpy_cbldm.generator import candidate_rw, merge_close_atoms
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
        data, sample = _case_data(ds, int(row))
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
        for key, z in (("posterior", mu), ("prior", mu_p)):
            with torch.no_grad():
                k = int(svae.count_atoms(z, z_c).clamp(min=2))
                Lhat = svae.decode(z, atoms=torch.tensor([k]))[0].double()
                start = svae.decode_positions(z)[0, :k].double().numpy()
            x, info = positions_from_laplacian(
                Lhat.numpy(), sigma, n_atoms=k, init=start
            )
            x, merged = merge_close_atoms(x)
            rw = float(candidate_rw([Atoms(f"Au{len(x)}", x)], data)[0])
            rec = {
                "row": int(row),
                "type": sample.structure_type,
                "natoms": n,
                "decoded_natoms": k,
                "merged_atoms": merged,
                "rw": rw,
            }
            if len(x) == n:
                d = np.linalg.norm(x[:, None] - x[None], axis=-1)
                rec["rms_distance_error"] = float(
                    np.sqrt(np.mean((d - d_true) ** 2))
                )
            out[key].append(rec)
    print(f"{len(rows)} validation clusters")
    print(
        f"{'latent':<10} {'type':<12} {'N exact':>7} {'N±10%':>6} "
        f"{'rms dd Å':>8} {'med. Rw':>7}"
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
            summary.setdefault(key, {})[t] = {
                "count_exact": float(exact),
                "count_within_10pct": float(close),
                "median_rms_distance_error": med_dd,
                "median_rw": med_rw,
            }
            print(
                f"{key:<10} {t:<12} {exact:>7.2f} {close:>6.2f} "
                f"{med_dd:>8.2f} {med_rw:>7.3f}"
            )
    path = Path(args.out)
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "summary": summary,
                    "records": out,
                    "load_average": list(os.getloadavg()),
                },
                indent=2,
            )
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
