"""The template decoder: exact lattice pieces from any latent, and a
loss that trains it."""

import dataclasses

import numpy as np
import pytest
import torch

from diffpy_cbldm.clusters import templates as T
from diffpy_cbldm.clusters.build import STRUCTURE_TYPES, build_cluster
from diffpy_cbldm.model import StructureVAE
from diffpy_cbldm.model.config import StructureVAEConfig
from diffpy_cbldm.training.data import laplacian_batch
from tests.model.tiny import tiny_config


@pytest.fixture(scope="module")
def templates():
    out = []
    for stype in STRUCTURE_TYPES:
        out.append(T.seed_sites(stype, radius=3.0))
    return out


def template_net(templates, **changes):
    """A tiny structure VAE with the template decoder on `templates`."""
    torch.manual_seed(0)
    config = dataclasses.replace(
        tiny_config().structure,
        decoder="template",
        template_sites=tuple(len(t) for t in templates),
        **changes,
    )
    net = StructureVAE(config)
    net.decoder.set_sites(templates)
    return net


@pytest.fixture(scope="module")
def net(templates):
    return template_net(
        templates, field_width=16, field_frequencies=4, count_prior=True
    ).eval()


def test_config_needs_a_site_count_per_type():
    with pytest.raises(ValueError, match="template_sites"):
        StructureVAEConfig(decoder="template", template_sites=(10, 20))
    with pytest.raises(ValueError, match="decoder must be one of"):
        StructureVAEConfig(decoder="lattice")


def test_set_sites_checks_the_counts(net, templates):
    with pytest.raises(ValueError, match="built for"):
        net.decoder.set_sites(templates[:-1] + [templates[-1][:3]])


def test_any_latent_decodes_to_exact_sites_of_one_type(net, templates):
    z = 3 * torch.randn(
        5, 1, 16, 16, generator=torch.Generator().manual_seed(1)
    )
    atoms = torch.tensor([5, 13, 40, 2, 60])
    with torch.no_grad():
        x = net.decode_positions(z, atoms)
        types = net.structure_types(z)
        scale = torch.exp(net.decoder.heads(z)[2]).double().numpy()
        L = net.decode(z, atoms)
    for k, (n, t) in enumerate(zip(atoms.tolist(), types.tolist())):
        assert np.all(x[k, n:].numpy() == 0)
        y = x[k, :n].double().numpy()
        sites, on = T.snap(y / scale[k], STRUCTURE_TYPES[t], tol=1e-5)
        assert on.all()
        assert len(np.unique(sites.round(4), axis=0)) == n
        # the Laplacian is that of these positions
        expected = laplacian_batch(x[k : k + 1], atoms[k : k + 1], 3.0, 256)
        torch.testing.assert_close(
            L[k : k + 1], expected, atol=1e-5, rtol=1e-5
        )


def test_loss_trains_the_decoder_to_a_cluster(templates):
    net = template_net(
        templates, field_width=32, field_frequencies=8, kl_weight=0.0
    )
    atoms = build_cluster("octahedral:Au:length=3")
    stype = STRUCTURE_TYPES.index("octahedral")
    _, occupied = T.register(
        T.template_frame(atoms.positions, "octahedral"), "octahedral"
    )
    rng = np.random.default_rng(0)
    # every site of the template: one cluster alone does not teach the
    # sites its sample leaves out (in training, other clusters do)
    index, label, weight, _ = T.site_targets(
        occupied, templates[stype], len(templates[stype]), rng
    )
    offset = sum(len(t) for t in templates[:stype])
    sites = {
        "stype": torch.tensor([stype]),
        "nn": torch.tensor([2.884]),
        "index": torch.as_tensor(index + offset)[None],
        "label": torch.as_tensor(label)[None],
        "weight": torch.as_tensor(weight)[None],
    }
    x = torch.zeros(1, 256, 3)
    x[0, : len(atoms)] = torch.as_tensor(atoms.positions, dtype=torch.float32)
    n = torch.tensor([len(atoms)])
    L = laplacian_batch(x, n, 3.0, 256)
    z_c = torch.zeros(1, 2, 125)
    with pytest.raises(ValueError, match="site targets"):
        net.loss(L, z_c)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(300):
        out = net.loss(L, z_c, sites=sites)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert set(out) >= {"rec", "type", "scale", "count", "kl", "loss"}
    with torch.no_grad():
        mu, _ = net.encode(L, z_c)
        assert int(net.structure_types(mu)) == stype
        y = net.decode_positions(mu, n)[0, : len(atoms)].double().numpy()
    # the decoded cluster is the octahedron: its sites, at its scale
    with torch.no_grad():
        scale = float(torch.exp(net.decoder.heads(mu)[2]))
    got = {tuple(v) for v in np.round(y / scale, 3)}
    assert got == {tuple(v) for v in np.round(occupied, 3)}
    assert scale == pytest.approx(2.884, rel=0.04)  # starts at e = 2.718


def test_template_count_is_the_fields_expected_count(net):
    z = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = net.decoder.expected_counts(z)
        logp = net.count_log_probs(z)
        n = net.count_atoms(z)
        # the field's expected count is the sum of its probabilities
        h, type_logits, _ = net.decoder.heads(z)
        t = type_logits.argmax(-1)
        index = net.decoder.type_sites(int(t[0]))[None]
        total = torch.sigmoid(net.decoder.site_logits(h[:1], t[:1], index))
    torch.testing.assert_close(expected[0], total.sum())
    torch.testing.assert_close(
        logp.exp().sum(-1), torch.ones(4), atol=1e-5, rtol=0
    )
    # the most probable count is the integer nearest the expected one in
    # ln n (a Gaussian in ln n peaks at the expected count)
    for k in range(4):
        e = float(expected[k].clamp(1, 256))
        lo, hi = max(1, int(np.floor(e))), int(np.ceil(e))
        assert int(n[k]) in (lo, hi)


def test_connected_decoding_keeps_one_piece_of_the_best_sites(net):
    from diffpy_cbldm.clusters.bonds import (
        connected_parts,
        connected_selection,
    )

    z = 3 * torch.randn(
        8, 1, 16, 16, generator=torch.Generator().manual_seed(5)
    )
    atoms = torch.tensor([3, 13, 30, 60, 5, 20, 40, 80])
    field = net.decoder
    with torch.no_grad():
        plain = net.decode_positions(z, atoms).double().numpy()
        joined = net.decode_positions(z, atoms, connected=True)
        joined = joined.double().numpy()
        h, type_logits, log_nn = field.heads(z)
        stype = type_logits.argmax(-1)
    scale = torch.exp(log_nn).double().numpy()
    repaired = 0
    for k in range(len(z)):
        t = int(stype[k])
        n = min(int(atoms[k]), field.counts[t])
        x, y = plain[k, :n] / scale[k], joined[k, :n] / scale[k]
        assert np.all(joined[k, n:] == 0)
        # one piece, and exactly connected_selection's sites of the
        # field's logits, best first
        assert connected_parts(y) == (1, 0)
        with torch.no_grad():
            logits = field.site_logits(
                h[k : k + 1], stype[k : k + 1], field.type_sites(t)[None]
            )[0]
        chosen, replaced = connected_selection(
            logits.double().numpy(), n, field.neighbours(t)
        )
        sites = field.sites[field.offsets[t] : field.offsets[t + 1]]
        np.testing.assert_allclose(
            y, sites[chosen].double().numpy(), atol=1e-5
        )
        if replaced == 0:  # the top sites were one piece already
            np.testing.assert_allclose(y, x, atol=1e-5)
        else:
            repaired += 1
            assert replaced < n
            kept = {tuple(v) for v in np.round(x, 4)}
            assert len(kept & {tuple(v) for v in np.round(y, 4)}) == (
                n - replaced
            )
    assert repaired > 0  # random latents of an untrained field fall apart


def test_both_ways_from_one_scoring_match_each_decoding(net):
    """``decode_both_ways`` scores the sites once and gives what two
    ``decode_positions`` calls give, with connected_selection's count of
    replaced sites."""
    from diffpy_cbldm.clusters.bonds import connected_selection

    z = 3 * torch.randn(
        8, 1, 16, 16, generator=torch.Generator().manual_seed(5)
    )
    atoms = torch.tensor([3, 13, 30, 60, 5, 20, 40, 80])
    field = net.decoder
    with torch.no_grad():
        plain, joined, replaced = net.decode_both_ways(z, atoms)
        assert torch.equal(plain, net.decode_positions(z, atoms))
        assert torch.equal(
            joined, net.decode_positions(z, atoms, connected=True)
        )
        stype, _, logits = field.occupancy(z)
    assert len(replaced) == len(z) and any(replaced)
    for k in range(len(z)):
        t = int(stype[k])
        n = min(int(atoms[k]), field.counts[t])
        _, count = connected_selection(
            logits[k].numpy(), n, field.neighbours(t)
        )
        assert replaced[k] == count


def test_both_ways_needs_the_template_decoder():
    net = StructureVAE(tiny_config().structure)
    with pytest.raises(ValueError, match="template decoder.*'coordinates'"):
        net.decode_both_ways(torch.zeros(1, 1, 16, 16))


def test_connected_decoding_needs_a_template_in_one_piece(templates):
    # every site two neighbour distances from the next: no bonds at all
    apart = [
        np.c_[2.0 * np.arange(len(t)), np.zeros((len(t), 2))]
        for t in templates
    ]
    net = template_net(apart, field_width=16, field_frequencies=4).eval()
    z = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.decode_positions(z, torch.tensor([1, 1]), connected=True)
        with pytest.raises(RuntimeError, match="not one piece: 3 bonded"):
            net.decode_positions(z, torch.tensor([3, 3]), connected=True)
