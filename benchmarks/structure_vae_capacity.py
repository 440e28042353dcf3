"""Which structure-VAE size learns Laplacians best in a fixed CPU budget?

Builds a small training set of real clusters (random shapes of the seven
structure types, random nearest-neighbour distance 2.3-3.0 Å, canonical
atom order, padded Laplacians with the default sigma), trains a condition
VAE briefly to supply the conditions, then trains each structure-VAE
variant for the same CPU time (one thread, bf16 autocast, AdamW) and
scores it on held-out clusters:

- ``rec``: squared error per atom pair of the posterior-mean
  reconstruction (the training loss's ``rec``);
- ``w_rel``: relative Frobenius error of the adjacency W over the atom
  block, ``|W_hat - W| / |W|``;
- ``count_ok``: fraction of clusters whose atom count, read from the
  decoded diagonal (``atom_count_from_laplacian``), is exact;
- ``prior_w_rel``: the same W error when decoding the conditional
  prior's mean instead of the posterior's (what the cbldm sampler starts
  from).

Usage::

    python benchmarks/structure_vae_capacity.py [--cpu-seconds 300]
    python benchmarks/structure_vae_capacity.py --curve 500 --cpu-seconds 2400

The first prints a table and writes
``benchmarks/results/structure_vae_capacity.json``; the second trains the
default size only, scores it every 500 steps and writes
``benchmarks/results/structure_vae_curve.json``.
"""

import argparse
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from diffpy_cbldm.atomic import write_json
from diffpy_cbldm.model.config import CbLDMConfig
from diffpy_cbldm.model.registry import build_modules

RESULTS = Path(__file__).parent / "results" / "structure_vae_capacity.json"
BATCH = 32
logger = logging.getLogger("structure_vae_capacity")


def build_set(n_clusters, conventions, seed):
    """PDFs (normalised) and Laplacians of random real clusters."""
    from diffpy_cbldm.clusters.build import enumerate_shapes
    from diffpy_cbldm.clusters.laplacian import laplacian
    from diffpy_cbldm.clusters.order import canonicalize
    from diffpy_cbldm.conventions import normalise_pdf
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    rng = np.random.default_rng(seed)
    shapes = enumerate_shapes()
    picks = rng.choice(len(shapes), size=n_clusters, replace=False)
    clusters = []
    for k in picks:
        nn = rng.uniform(2.3, 3.0)
        clusters.append(canonicalize(shapes[k].build("Cu", nn=nn)))
    calc = DebyePDFCalculator.from_settings(
        conventions.pdf, dtype=torch.float32
    )
    pdfs = []
    for start in range(0, n_clusters, 64):
        pdfs.append(calc.batch(clusters[start : start + 64])[1])
    pdf = normalise_pdf(
        torch.tensor(np.concatenate(pdfs), dtype=torch.float32), conventions
    )
    lap = torch.tensor(
        np.array([laplacian(a, conventions.sigma) for a in clusters])
    )
    types = [shapes[k].stype for k in picks]
    return pdf, lap, types


def train(
    module, loss_fn, n_train, cpu_seconds, lr, seed, every=None, report=None
):
    """AdamW with bf16 autocast until `cpu_seconds` of CPU time; calls
    ``report(steps)`` every `every` steps when given."""
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    steps, samples, start = 0, 0, time.process_time()
    while time.process_time() - start < cpu_seconds:
        order = torch.randperm(n_train, generator=g)
        for i in range(0, n_train - BATCH + 1, BATCH):
            idx = order[i : i + BATCH]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            samples += BATCH
            if every and steps % every == 0:
                paused = time.process_time()
                report(steps)
                start += time.process_time() - paused
            if time.process_time() - start >= cpu_seconds:
                break
    return {"steps": steps, "epochs": samples / n_train}


@torch.no_grad()
def score(svae, L, z_c):
    from diffpy_cbldm.model.structure_vae import adjacency

    rec, w_rel, prior_w_rel, count_ok = [], [], [], []
    for i in range(0, len(L), BATCH):
        Lb, zb = L[i : i + BATCH], z_c[i : i + BATCH]
        mu, _ = svae.encode(Lb, zb)
        mu_p, _ = svae.prior(zb)
        counts = svae.count_atoms(mu)
        L_hat, L_prior = svae.decode(mu), svae.decode(mu_p)
        n = (torch.diagonal(Lb, dim1=-2, dim2=-1) > 0).sum(-1)
        rec += (((L_hat - Lb) ** 2).sum((-2, -1)) / n.float() ** 2).tolist()
        for b in range(len(Lb)):
            k = int(n[b])
            W = adjacency(Lb[b : b + 1])[0, :k, :k]
            for out, Lx in ((w_rel, L_hat), (prior_w_rel, L_prior)):
                Wx = adjacency(Lx[b : b + 1])[0, :k, :k]
                out.append(float((Wx - W).norm() / W.norm()))
            count_ok.append(int(counts[b]) == k)
    return {
        "rec": float(np.mean(rec)),
        "w_rel": float(np.median(w_rel)),
        "prior_w_rel": float(np.median(prior_w_rel)),
        "count_ok": float(np.mean(count_ok)),
    }


def learning_curve(config, L, z_c, n_train, args):
    """Train the default structure VAE and score it along the way, on the
    held-out clusters and on as many training clusters."""
    torch.manual_seed(args.seed)
    svae = build_modules(config, ["structure_vae"])["structure_vae"]
    test = slice(n_train, len(L))
    seen = slice(0, len(L) - n_train)
    points = []

    def report(steps):
        row = {
            "steps": steps,
            "epochs": steps * BATCH / n_train,
            "cpu_seconds": time.process_time() - start,
            "test": score(svae, L[test], z_c[test]),
            "train": score(svae, L[seen], z_c[seen]),
        }
        logger.info("%s", row)
        points.append(row)

    start = time.process_time()
    train(
        svae,
        lambda idx: svae.loss(L[idx], z_c[idx])["loss"],
        n_train,
        args.cpu_seconds,
        1e-3,
        args.seed,
        every=args.curve,
        report=report,
    )
    return {
        "params": sum(p.numel() for p in svae.parameters()),
        "curve": points,
    }


def variants(base):
    s = base.structure
    return {
        "coordinates, hidden 1024": s,
        "coordinates, hidden 512": replace(s, coordinate_hidden=512),
        "patch 16, (64,), dec 2 blocks": replace(s, decoder="patches"),
        "patch 16, (96,), dec 2 blocks": replace(
            s,
            decoder="patches",
            encoder_channels=(96,),
            decoder_channels=(96,),
        ),
        "patch 8, (32, 64), dec 1 block": replace(
            s,
            decoder="patches",
            patch_size=8,
            encoder_channels=(32, 64),
            decoder_channels=(64, 32),
            decoder_blocks=1,
        ),
        "patch 8, (48, 96), dec 2 blocks": replace(
            s,
            decoder="patches",
            patch_size=8,
            encoder_channels=(48, 96),
            decoder_channels=(96, 48),
        ),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=1600)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--cpu-seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--curve",
        type=int,
        default=0,
        help="train only the default size, scoring every CURVE steps",
    )
    parser.add_argument(
        "--variants",
        type=int,
        default=None,
        help="train only the first VARIANTS variants",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    config = CbLDMConfig()
    t0 = time.perf_counter()
    pdf, L, types = build_set(args.clusters, config.conventions, args.seed)
    logger.info(
        "data: %d clusters in %.0f s", len(L), time.perf_counter() - t0
    )
    n_train = len(L) - args.test

    cvae = build_modules(config, ["condition_vae"])["condition_vae"]
    cvae_fit = train(
        cvae,
        lambda idx: cvae.loss(pdf[idx])["loss"],
        n_train,
        args.cpu_seconds / 5,
        2e-3,
        args.seed,
    )
    cvae.eval()
    with torch.no_grad():
        z_c = cvae.condition(pdf)
        cvae_rec = float(((cvae(pdf[n_train:]) - pdf[n_train:]) ** 2).mean())
    logger.info("condition VAE: %s, test MSE %.2e", cvae_fit, cvae_rec)

    if args.curve:
        result = learning_curve(config, L, z_c, n_train, args)
        result.update(
            args=vars(args),
            sigma=config.conventions.sigma,
            load_average=list(os.getloadavg()),
        )
        path = RESULTS.with_name("structure_vae_curve.json")
        write_json(path, result)
        return

    rows = []
    for label, s in list(variants(config).items())[: args.variants]:
        torch.manual_seed(args.seed)
        svae = build_modules(replace(config, structure=s), ["structure_vae"])[
            "structure_vae"
        ]
        fit = train(
            svae,
            lambda idx: svae.loss(L[idx], z_c[idx])["loss"],
            n_train,
            args.cpu_seconds,
            1e-3,
            args.seed,
        )
        row = {
            "variant": label,
            "params": sum(p.numel() for p in svae.parameters()),
            **fit,
            **score(svae, L[n_train:], z_c[n_train:]),
        }
        logger.info("%s", row)
        rows.append(row)

    print(
        f"\n{args.clusters - args.test} training / {args.test} test clusters,"
        f" {args.cpu_seconds:.0f} CPU-s each, sigma "
        f"{config.conventions.sigma} Å"
    )
    print(
        f"{'variant':<34}{'params':>8}{'epochs':>8}{'rec':>9}"
        f"{'W err':>8}{'prior W err':>12}{'count ok':>9}"
    )
    for r in rows:
        print(
            f"{r['variant']:<34}{r['params'] / 1e6:>7.2f}M{r['epochs']:>8.1f}"
            f"{r['rec']:>9.4f}{r['w_rel']:>8.3f}{r['prior_w_rel']:>12.3f}"
            f"{r['count_ok']:>9.2f}"
        )
    result = {
        "args": vars(args),
        "sigma": config.conventions.sigma,
        "types": {t: types.count(t) for t in sorted(set(types))},
        "condition_vae": {**cvae_fit, "test_mse": cvae_rec},
        "structure_vae": rows,
        "load_average": list(os.getloadavg()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, result)


if __name__ == "__main__":
    main()
