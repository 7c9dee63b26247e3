"""benchmarks/pita_energy_warm_start.py: a stage-0 checkpoint that keeps a run's score network (its
weights, EMA and Adam state, the RNG) beside a fresh energy network of another configuration, and a
``run pita --resume`` that trains on from it."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from boltzpath.config import from_dict
from boltzpath.diffusion.train import build_models, read_checkpoint
from boltzpath.errors import BadInput
from boltzpath.methods.pita import run_pita
from boltzpath.methods.pita_config import PITAConfig
from boltzpath.targets.registry import make_target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pita_energy_warm_start  # noqa: E402
from test_pita_peptides import TINY  # noqa: E402


def test_warm_start_keeps_the_score_network_and_the_run_trains_on_from_it(tmp_path):
    data = tmp_path / "t0.npy"
    np.save(data, make_target("aldp-fab").prior_sample(48, torch.Generator().manual_seed(5)).numpy())
    base = dict(TINY, stage0={"data": str(data)})
    run_pita(from_dict(PITAConfig, base), tmp_path / "src")
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(base))
    sets = ["net.pair_features=4", "net.pair_head=energy", "train.force=1.0", "train.steps=9"]
    dest = pita_energy_warm_start.warm_start(tmp_path / "src", tmp_path / "new", "aldp-fab", str(preset),
                                             None, sets)
    src, new = read_checkpoint(tmp_path / "src" / "stage_0" / "model.pt"), read_checkpoint(dest)
    assert new["step"] == src["step"] == 6 and new["history"] == src["history"]
    for part in ("models", "ema"):
        for k, v in src[part]["score"].items():
            assert torch.equal(new[part]["score"][k], v), (part, k)
        assert any("pair" in k for k in new[part]["energy"])
        assert not any("pair" in k for k in src[part]["energy"])
    assert torch.equal(new["generator"], src["generator"])
    score = build_models(make_target("aldp-fab"), from_dict(PITAConfig, base).net)[0]
    n_score = len(list(score.parameters()))
    assert set(new["optimizer"]["state"]) == set(range(n_score))  # D_θ's Adam moments, U_η's empty
    for i in range(n_score):
        assert torch.equal(new["optimizer"]["state"][i]["exp_avg"], src["optimizer"]["state"][i]["exp_avg"])
    # the run trains stage 0 on from step 6 to 9 (the score net's first 6 steps are the source's)
    cfg = from_dict(PITAConfig, yaml.safe_load(preset.read_text()))
    cfg.net.pair_features, cfg.net.pair_head, cfg.train.force, cfg.train.steps = 4, "energy", 1.0, 9
    res = run_pita(cfg, tmp_path / "new", resume=True)
    assert (tmp_path / "new" / "COMPLETE").is_file() and res.samples.x.shape == (32, 66)
    done = read_checkpoint(tmp_path / "new" / "stage_0" / "model.pt")
    assert done["step"] == 9 and done["history"][: len(src["history"])] == src["history"]
    # --keep-energy: U_η starts as the source's function (the new pair head starts at zero)
    kept = pita_energy_warm_start.warm_start(tmp_path / "src", tmp_path / "kept", "aldp-fab", str(preset),
                                             None, sets, keep_energy=True)
    kept_ckpt = read_checkpoint(kept)
    for part in ("models", "ema"):
        for k, v in src[part]["energy"].items():
            assert torch.equal(kept_ckpt[part]["energy"][k], v), (part, k)
    cfg_k = from_dict(PITAConfig, yaml.safe_load(preset.read_text()))
    cfg_k.net.pair_features, cfg_k.net.pair_head = 4, "energy"
    target = make_target("aldp-fab")
    _, e_src = build_models(target, from_dict(PITAConfig, base).net)
    _, e_new = build_models(target, cfg_k.net)
    e_src.load_state_dict(src["ema"]["energy"])
    e_new.load_state_dict(kept_ckpt["ema"]["energy"])
    x = target.prior_sample(4, torch.Generator().manual_seed(1))
    sig = torch.full((4,), 0.01)
    assert torch.allclose(e_new.energy(x, sig), e_src.energy(x, sig), rtol=1e-5, atol=1e-5)
    with pytest.raises(BadInput, match="does not fit"):
        pita_energy_warm_start.warm_start(tmp_path / "src", tmp_path / "k2", "aldp-fab", str(preset), None,
                                          ["net.hidden=32", "net.pair_head=energy", "net.pair_features=4"],
                                          keep_energy=True)
    # a score network of another size does not fit: refused, one line
    with pytest.raises(BadInput, match="does not fit"):
        pita_energy_warm_start.warm_start(tmp_path / "src", tmp_path / "other", "aldp-fab", str(preset),
                                          None, ["net.hidden=32"])
    with pytest.raises(BadInput, match="exists already"):
        pita_energy_warm_start.warm_start(tmp_path / "src", tmp_path / "new", "aldp-fab", str(preset),
                                          None, [])


def test_offdist_energy_reports_groups_and_the_rung_on_a_tiny_peptide_run(tmp_path):
    """benchmarks/pita_offdist_energy.py on a tiny ALDP run: the buffer group is the reference (zero
    offsets), the model's samples split into all-trans and cis groups that add up to --n, and the
    rung's cis fractions are fractions; a LABEL=DIR without '=' and too few samples are one-line errors."""
    import pita_offdist_energy

    data = tmp_path / "t0.npy"
    np.save(data, make_target("aldp-fab").prior_sample(48, torch.Generator().manual_seed(5)).numpy())
    run_pita(from_dict(PITAConfig, dict(TINY, stage0={"data": str(data)})), tmp_path / "run")
    row = pita_offdist_energy.measure(tmp_path / "run", 0, 16, 0)
    assert row["buffer"]["delta_energy_mean"] == 0 and row["buffer"]["delta_u_mean"] == 0
    assert row["model_trans"]["n"] + row["model_cis"]["n"] <= 16 == row["n_model"]
    assert 0 <= row["rung"]["cis_fraction_t0"] <= 1 and 0 <= row["rung"]["cis_fraction_t0_weighted"] <= 1
    # the energy network from the same run (the swap path): the same report
    same = pita_offdist_energy.measure(tmp_path / "run", 0, 16, 0, energy_from=tmp_path / "run")
    assert same["model_cis_fraction"] == row["model_cis_fraction"]
    assert same["model_trans"] == row["model_trans"] and same["energy_from"] == str(tmp_path / "run")
    with pytest.raises(BadInput, match="energy-from"):
        pita_offdist_energy.measure(tmp_path / "run", 0, 16, 0, energy_from=tmp_path)
    with pytest.raises(BadInput, match="LABEL=DIR"):
        pita_offdist_energy.main(["--run", str(tmp_path / "run")])
    with pytest.raises(BadInput, match="--n"):
        pita_offdist_energy.main(["--run", f"a={tmp_path / 'run'}", "--n", "2"])
