"""The PITA ladder end to end: a tiny gmm40 run, kill-and-resume reproducibility, bad inputs."""

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from boltzpath.cli import cli
from boltzpath.config import from_dict
from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.methods.pita import run_pita
from boltzpath.methods.pita_cli import pita, resolve_config
from boltzpath.methods.pita_config import PITAConfig

TINY = {
    "target": "gmm40",
    "temperatures": [4.0, 2.0, 1.0],
    "stage0": {"method": "mala", "n_samples": 256, "options": {"chains": 64, "burn_in": 50, "thin": 2}},
    "net": {"kind": "mlp", "hidden": 16, "layers": 2, "emb_dim": 8, "sigma_data": 20.0},
    "train": {"steps": 30, "batch_size": 64, "checkpoint_every": 10, "log_every": 10, "augment": False},
    "finetune": {"steps": 30, "batch_size": 64, "checkpoint_every": 10, "log_every": 10, "augment": False},
    "anneal": {"n_steps": 10, "divergence": "exact"},
    "relax": {"n_steps": 6, "adapt_steps": 3, "step_size": 0.01},
    "n_particles": 128,
    "buffer_size": 128,
    "eval_max_n": 128,
    "eval_noise_floors": False,
    "stage_plots": False,  # matplotlib costs ~5 s per stage; plots are covered by report tests
}


class Killed(RuntimeError):
    pass


def test_tiny_run_writes_a_complete_run_folder(tmp_path):
    res = run_pita(from_dict(PITAConfig, TINY), tmp_path / "run")
    d = tmp_path / "run"
    for f in ("config.yaml", "samples.npz", "metrics.json", "ladder.png", "run.log", "COMPLETE"):
        assert (d / f).is_file(), f
    for k in range(3):
        assert (d / f"stage_{k}" / "samples.npz").is_file() and (d / f"stage_{k}" / "COMPLETE").is_file()
    assert not (d / "stage_2" / "model.pt").exists()  # the last stage trains nothing
    samples = Samples.load(d / "samples.npz")
    assert samples.x.shape == (128, 2) and np.isfinite(samples.energy.numpy()).all()
    metrics = json.loads((d / "metrics.json").read_text())
    ev = metrics["energy_evaluations"]
    # every phase is counted and the total is their sum (annealing uses the model only; the
    # true-energy tail correction evaluates each annealed particle once)
    assert ev["initial_data"] > 0 and ev["training_buffers"] == 256 + 128 + 128
    assert ev["relaxation"] == 2 * 6 * 128 and ev["final_reweighting"] == 2 * 128
    assert ev["total"] == sum(v for k, v in ev.items() if k != "total")
    assert metrics["evaluation"]["metrics"]["mode_coverage"]["n"] == 128
    assert res.samples.n == 128
    # each stage but the last reports how well its buffer covers the next temperature (no evaluation)
    overlaps = [st.get("next_rung_overlap") for st in metrics["stages"]]
    assert overlaps[-1] is None and all(0 < o["ess_fraction"] <= 1 for o in overlaps[:-1])
    # relaxation actually moved the particles (reported per stage)
    st = json.loads((d / "stage_2" / "metrics.json").read_text())
    assert st["relaxation"]["mean_rms_displacement"] > 0
    # the drift check of its 3 frozen steps (one step per half) is recorded (its warning:
    # test_drift_line_names_the_stage_and_the_fix; the check itself: test_smc_annealing)
    assert st["relaxation"]["drift"]["window_steps"] == 1 and st["relaxation"]["extended_steps"] == 0
    # the repair report (no gmm40 sample is above 1000 E/kT) and the buffer's distinct ancestors
    assert st["relaxation"]["repaired"] == 0 and st["relaxation"]["still_above_threshold"] == 0
    for pop in st["populations"]:
        assert 1 <= pop["distinct_after_final_resampling"] <= 128
    # the annealed model read on the stage's own samples (E/kT at the previous temperature)
    pm = st["previous_model_here"]
    assert pm["n"] > 0 and -1 <= pm["corr"] <= 1 and pm["implied_temperature"] > 0


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path):
    cfg = from_dict(PITAConfig, TINY)
    full = run_pita(cfg, tmp_path / "full")

    def kill(event, info):  # dies mid fine-tuning of stage 1 (after a checkpoint at step 10)
        if event == "train" and info["stage"] == 1 and info["step"] >= 20:
            raise Killed

    with pytest.raises(Killed):
        run_pita(cfg, tmp_path / "cut", callback=kill)
    assert (tmp_path / "cut" / "stage_0" / "COMPLETE").is_file()
    assert not (tmp_path / "cut" / "stage_1" / "COMPLETE").is_file()
    stage0_before = (tmp_path / "cut" / "stage_0" / "samples.npz").read_bytes()
    events = []
    resumed = run_pita(cfg, tmp_path / "cut", resume=True, callback=lambda e, i: events.append((e, i)))
    # finished stage 0 is not redone (no stage-0 sampling or training events) and its files are untouched
    assert not any(i.get("stage", 0) == 0 and e in ("train", "sample") for e, i in events)
    assert (tmp_path / "cut" / "stage_0" / "samples.npz").read_bytes() == stage0_before
    # identical stage outputs: fixed per-stage seeds + bit-for-bit training resume
    for k in range(3):
        a = Samples.load(tmp_path / "full" / f"stage_{k}" / "samples.npz")
        b = Samples.load(tmp_path / "cut" / f"stage_{k}" / "samples.npz")
        assert np.array_equal(a.x.numpy(), b.x.numpy()), k
    assert np.array_equal(full.samples.x.numpy(), resumed.samples.x.numpy())
    assert full.metrics["energy_evaluations"] == resumed.metrics["energy_evaluations"]


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path):
    runner = CliRunner()
    cases = [
        ["--preset", "nonsense", "--out", str(tmp_path / "a")],
        ["--target", "gmm40", "--out", str(tmp_path / "b"), "--set", "anneal.nsteps=3"],
        ["--target", "gmm40", "--out", str(tmp_path / "c"), "--set", "temperatures=[1.0, 2.0]"],
        ["--target", "gmm40", "--out", str(tmp_path / "d"), "--set", "anneal.gamma=2"],
        ["--target", "nope", "--out", str(tmp_path / "e"), "--set", "train.steps=1"],
    ]
    for args in cases:
        r = runner.invoke(pita, args)
        assert r.exit_code == 2, (args, r.output)
        assert "Error" in r.output and "Traceback" not in r.output


def test_presets_resolve_and_overrides_apply():
    for preset in ("quick", "cpu", "paper"):
        for target in ("lj13", "dw4", "gmm40"):
            cfg = resolve_config(target, preset, 3, ())
            assert cfg.target == target and cfg.seed == 3
            assert cfg.relax.adapt == "shared"  # the unbiased warm-up on every particle preset
            # the drift check extends the relaxation on the LJ-13 cpu and quick presets only (measured
            # there: docs/pita.md, twenty-fifth and twenty-sixth sessions); quick at |z| > 2
            measured = {("lj13", "cpu"): (3000, 3.0), ("lj13", "quick"): (1500, 2.0)}
            extend = measured.get((target, preset), (0, 3.0))
            assert (cfg.relax.extend_max_steps, cfg.relax.drift_z) == extend
    cfg = resolve_config("gmm40", "quick", None, ("anneal.n_steps=7", "net.hidden=8"))
    assert cfg.anneal.n_steps == 7 and cfg.net.hidden == 8 and cfg.net.kind == "mlp"
    with pytest.raises(BadInput):
        resolve_config("gmm40", "quick", None, ("nosuchkey=1",))


def test_a_preset_file_starts_from_a_shipped_preset_with_base(tmp_path, monkeypatch):
    # the user's file changes two keys of the shipped dw4 cpu recipe and keeps the rest
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: pita_dw4_cpu\ntarget: dw4\nanneal: {n_steps: 7}\nn_particles: 33\n")
    shipped, cfg = resolve_config("dw4", "cpu", None, ()), resolve_config(None, str(mine), None, ())
    assert cfg.anneal.n_steps == 7 and cfg.n_particles == 33
    assert cfg.net == shipped.net and cfg.temperatures == shipped.temperatures
    assert cfg.anneal.divergence == shipped.anneal.divergence
    bad_name = "name of a shipped preset"
    for text, msg in (("base: no_such_preset\n", "does not exist"), ("base: ../x\n", bad_name),
                      ("base: [1]\n", bad_name)):
        mine.write_text(text)
        with pytest.raises(BadInput, match=msg):
            resolve_config("dw4", str(mine), None, ())
    # a cycle is named, not a RecursionError
    from boltzpath import config as config_module
    from boltzpath.config import load_preset_file
    (tmp_path / "a.yaml").write_text("base: b\n")
    (tmp_path / "b.yaml").write_text("base: a\n")
    monkeypatch.setattr(config_module, "PRESET_DIR", tmp_path)
    with pytest.raises(BadInput, match="cycle: a -> b -> a"):
        load_preset_file(tmp_path / "a.yaml", ("a",))


def test_cli_runs_and_refuses_to_clobber(tmp_path):
    # a preset given as a YAML path, plus overrides on top of it
    runner = CliRunner()
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(TINY))
    out = str(tmp_path / "run")
    args = ["--preset", str(preset), "--out", out, "--quiet"]
    r = runner.invoke(pita, [*args, "--set", "temperatures=[2.0, 1.0]"])
    assert r.exit_code == 0, r.output
    assert "energy evaluations" in r.output
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["temperatures"] == [2.0, 1.0]
    r2 = runner.invoke(pita, ["--preset", str(preset), "--out", out, "--quiet"])
    assert r2.exit_code == 2 and "not empty" in r2.output
    # resuming with a different config is refused rather than mixing two runs
    r3 = runner.invoke(pita, ["--preset", str(preset), "--out", out, "--quiet", "--resume"])
    assert r3.exit_code == 2 and "different config" in r3.output


def test_one_temperature_conditioned_model_over_all_buffers(tmp_path):
    # the released LJ-13 setup: stage k trains one temperature-conditioned model on the buffers of
    # stages 0..k, each labelled with its temperature; the model is read at T_{k-1} when annealing
    cfg = dict(TINY, train_on_all_buffers=True, net={**TINY["net"], "temperature_conditioned": True})
    res = run_pita(from_dict(PITAConfig, cfg), tmp_path / "all")
    assert res.samples.x.shape == (128, 2) and np.isfinite(res.samples.energy.numpy()).all()
    st1 = json.loads((tmp_path / "all" / "stage_1" / "metrics.json").read_text())
    assert st1["energy_model_gate"]["checks"][-1]["n"] > 0
    # stage 1 trained on stage 0's whole buffer (256) and its own minus the 10 % held out (115)
    assert st1["training"]["n_train"] == 256 + 128 - 13
    with pytest.raises(BadInput, match="temperature_conditioned"):
        from_dict(PITAConfig, dict(TINY, train_on_all_buffers=True)).validate()


def test_a_ladder_in_the_wrong_unit_is_refused_before_anything_is_written(tmp_path):
    # particle ladders are reduced units (4 → 1); a peptide is in kelvin (300 K): a factor of ten
    # between the ladder's end and the target's natural temperature is a unit mistake. The peptide
    # presets carry kelvin ladders (tests/test_pita_peptides.py); a particle ladder set on a peptide,
    # or a kelvin ladder on a particle target, is refused with one line
    pytest.importorskip("openmm")
    r = CliRunner().invoke(pita, ["--target", "aldp-fab", "--preset", "quick", "--out", str(tmp_path / "p"),
                                  "--set", "temperatures=[4.0, 3.0, 2.0, 1.0]"])
    assert r.exit_code == 2 and "does not fit aldp-fab" in r.output and "kelvin" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()
    r = CliRunner().invoke(pita, ["--target", "lj13", "--preset", "quick", "--out", str(tmp_path / "q"),
                                  "--set", "temperatures=[1200.0, 755.95, 555.52, 300.0]"])
    assert r.exit_code == 2 and "does not fit lj13" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "q").exists()


def test_bridge_tail_runs_in_the_ladder_and_counts_its_moves(tmp_path):
    # tail "bridge": the true-energy correction spread over tempered levels with MALA moves; every
    # move evaluates the target once per particle, counted under final_reweighting
    cfg = dict(TINY, anneal={**TINY["anneal"], "tail": "bridge", "bridge_moves": 2, "bridge_step_size": 0.01})
    run_pita(from_dict(PITAConfig, cfg), tmp_path / "bridge")
    st = json.loads((tmp_path / "bridge" / "stage_1" / "metrics.json").read_text())
    info = st["populations"][0]["bridge"]
    assert info["betas"][-1] == 1.0 and info["levels"] == len(info["betas"]) >= 1
    # one evaluation of every annealed particle, then `moves` per level
    assert st["energy_evaluations"]["final_reweighting"] == 128 * (1 + 2 * info["levels"])
    # no particle needed the repair fallback (run.log and the run's warning name a stage that did)
    assert info["repaired_before_bridge"] == 0 and st["repaired_fraction"] == 0
    # the annealed particles that were above the flag (left out of the bridge), as a fraction
    assert st["overlap_fraction"] == info["excluded_high_energy"] / 128
    final = json.loads((tmp_path / "bridge" / "metrics.json").read_text())
    assert final["stages"][1]["overlap_fraction"] == st["overlap_fraction"]


def test_overshoot_anneals_below_the_stage_temperature_only_where_a_true_energy_tail_returns(tmp_path):
    # anneal.overshoot: the weighted SMC targets γ·overshoot and the bridge (told that γ) carries the
    # particles back to T_k (exactness: tests/test_smc_bridge.py); the score-scaling ablation has no
    # such tail, so it keeps γ; tail "fk" would leave the samples at the colder temperature: refused
    two = dict(TINY, temperatures=[4.0, 2.0])
    bridge = {**TINY["anneal"], "tail": "bridge", "bridge_moves": 1, "bridge_step_size": 0.01,
              "overshoot": 1.25}
    run_pita(from_dict(PITAConfig, dict(two, anneal=bridge)), tmp := tmp_path / "weighted")
    st = json.loads((tmp / "stage_1" / "metrics.json").read_text())
    assert st["gamma"] == pytest.approx(2.0 * 1.25) and st["overshoot"] == pytest.approx(1.25)
    assert st["temperature"] == 2.0  # the samples are labelled, relaxed and stored at T_k
    run_pita(from_dict(PITAConfig, dict(two, anneal={**bridge, "use_weights": False})),
             tmp2 := tmp_path / "ablation")
    st = json.loads((tmp2 / "stage_1" / "metrics.json").read_text())
    assert st["gamma"] == pytest.approx(2.0) and st["overshoot"] == pytest.approx(1.0)
    for bad in ({"tail": "fk", "overshoot": 1.25}, {"overshoot": 0.0}):
        with pytest.raises(BadInput, match="overshoot"):
            from_dict(PITAConfig, dict(two, anneal={**TINY["anneal"], **bad})).validate()


def test_model_check_compares_the_models_own_samples_with_its_buffer(monkeypatch):
    """The generator check (gate.model_check_n): the samples the anneal returns are scored with the
    true E/kT_k against the buffer's 99th percentile. A "model" that returns its buffer is in range
    (≥ 99 %, same median); one that returns configurations far out is not (0 %). Wiring and the
    warning in a real ladder: tests/test_pita_peptides.py."""
    import torch

    import boltzpath.methods.pita as pita_mod
    from boltzpath import make_target
    from boltzpath.diffusion.buffer import TrainingBuffer
    from boltzpath.diffusion.schedule import KarrasSchedule
    from boltzpath.diffusion.train import Models, NetConfig, build_models
    from boltzpath.parallel.dist import init_from_env
    from boltzpath.parallel.pita_parallel import PitaParallel
    from boltzpath.smc.annealing import AnnealResult

    cfg = from_dict(PITAConfig, {**TINY, "temperatures": [1.0, 0.5], "gate": {"model_check_n": 64}})
    target = make_target("gmm40")
    gen = torch.Generator().manual_seed(0)
    x = target.exact_sample(512, gen).double()  # stage 0's T = 1: exact samples as its "buffer"
    buffer = TrainingBuffer(x, target.energy(x), torch.zeros_like(x))
    models = Models(*build_models(target, NetConfig(kind="mlp", hidden=8, layers=1, emb_dim=4)))
    schedule = KarrasSchedule(0.05, 80.0, 7.0)
    par = PitaParallel(init_from_env("cpu"))
    for returned, expect_in in ((x[:64], True), (x[:64] * 50.0, False)):
        monkeypatch.setattr(pita_mod, "anneal", lambda *a, r=returned, **k: AnnealResult(
            r.float(), torch.zeros(64), 0.0, 64.0, None))
        check = pita_mod._model_check(cfg, 0, models, target, buffer, schedule, par)
        assert check["n"] == 64 and check["temperature"] == 1.0
        if expect_in:
            assert check["in_range_fraction"] >= 0.95
            assert abs(check["median_energy"] - check["buffer_median_energy"]) < 0.5 * buffer.energy.std()
        else:
            assert check["in_range_fraction"] == 0.0
            assert "0% of 64 model samples" in pita_mod._model_check_warning(0, 1.0, check)


def test_references_folder_scores_every_stage_that_has_a_file(tmp_path):
    # --references DIR: each ladder temperature with a <target>_T<T:g>_seed0.npy (the names
    # benchmarks/particle_references.py writes) is scored against it; a reference named by --set
    # keeps precedence, and a folder without any matching file is refused with one line
    import torch

    from boltzpath import make_target
    from boltzpath.methods.pita_config import add_references

    refs = tmp_path / "refs"
    refs.mkdir()
    target = make_target("gmm40")
    for temp in (2.0, 1.0):  # none at T = 4; a stray file at a temperature off the ladder is ignored
        x = target.exact_sample(256, torch.Generator().manual_seed(0)).float().numpy()
        np.save(refs / f"gmm40_T{temp:g}_seed0.npy", x)
    np.save(refs / "gmm40_T3_seed0.npy", x)
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    r = CliRunner().invoke(pita, ["--preset", str(preset), "--out", str(out), "--quiet",
                                  "--references", str(refs)])
    assert r.exit_code == 0, r.output
    files = [json.loads((out / f"stage_{k}" / "metrics.json").read_text())["evaluation"].get("reference_file")
             for k in range(3)]
    assert files[0] is None
    assert files[1].endswith("gmm40_T2_seed0.npy") and files[2].endswith("gmm40_T1_seed0.npy")
    assert yaml.safe_load((out / "config.yaml").read_text())["stage_references"] == {
        "2": str((refs / "gmm40_T2_seed0.npy").resolve()), "1": str((refs / "gmm40_T1_seed0.npy").resolve())}
    # `evaluate` rescores the final samples where PITA keeps them ("evaluation", what `report` reads)
    r = CliRunner().invoke(cli, ["evaluate", str(out), "--reference", str(refs / "gmm40_T3_seed0.npy"),
                                 "--quiet"])
    assert r.exit_code == 0 and "gmm40_T3_seed0.npy" in r.output, r.output
    ev = json.loads((out / "metrics.json").read_text())["evaluation"]
    assert ev["reference"].endswith("gmm40_T3_seed0.npy") and "reference_file" not in ev
    assert ev["metrics"]["energy_w2"]["n"] == 128 and np.isfinite(ev["mean_energy"])
    # references the config names itself win over the folder's files at their temperatures
    cfg = resolve_config(None, str(preset), None, ("reference=held.npy", "stage_references={'2.0': t2.npy}"))
    add_references(cfg, refs)
    assert cfg.stage_references == {"2.0": "t2.npy"} and cfg.reference == "held.npy"
    for args, msg in (([str(tmp_path / "nope")], "is not a folder"), ([str(tmp_path)], "gmm40_T4_seed0.npy")):
        r = CliRunner().invoke(pita, ["--preset", str(preset), "--out", str(tmp_path / "x"), "--quiet",
                                      "--references", *args])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "x").exists()


def test_ladder_plot_shows_the_reference_mean_energy_and_the_noise_floors(tmp_path):
    from boltzpath.methods.pita_report import MEAN_E, _guides, write_ladder_plot

    def stage(t, mean, shift, w2, floor):
        metrics = {"mean_energy_shift": {"value": shift, "noise_floor": {"mean": 0.1}},
                   "energy_w2": {"value": w2, "noise_floor": {"mean": floor}}}
        return {"temperature": t, "final_ess_fraction": 0.5,
                "evaluation": {"mean_energy": mean, "n": 10, "metrics": metrics}}

    stages = [{"temperature": 4.0, "evaluation": {"mean_energy": 16.0, "n": 10}},  # no reference
              stage(2.0, 6.0, 2.5, 1.8, 0.6), stage(1.0, -42.0, -0.5, 0.7, 0.6)]
    g = _guides(stages)
    assert g[MEAN_E] == [None, 3.5, -41.5]  # the reference's mean: the samples' minus the shift
    assert g["energy_w2"] == [None, 0.6, 0.6]
    png = write_ladder_plot(tmp_path / "ladder.png", stages)
    assert png.is_file() and png.stat().st_size > 1000


def test_anneal_stages_override_the_anneal_options_of_one_stage_only(tmp_path):
    # anneal_stages: {T_k: {...}} merges over `anneal` for the stage annealing to T_k (e.g. the
    # increment clamp on the first step only); keys must be temperatures the ladder anneals to
    cfg = dict(TINY, anneal_stages={2.0: {"n_steps": 4, "clamp_quantile": 0.9}})
    run_pita(from_dict(PITAConfig, cfg), tmp_path / "run")
    n_steps = [json.loads((tmp_path / "run" / f"stage_{k}" / "metrics.json").read_text())
               ["populations"][0]["n_steps"] for k in (1, 2)]
    assert n_steps == [4, TINY["anneal"]["n_steps"]]
    c = from_dict(PITAConfig, cfg)
    assert c.anneal_for(1).clamp_quantile == 0.9 and c.anneal_for(2).clamp_quantile is None
    assert c.anneal_for(1).gamma == 2.0 and c.anneal.gamma == 1.0
    # the same from the command line's --set syntax (YAML flow mapping)
    over = resolve_config("gmm40", "quick", 0, ["temperatures=[4,2,1]", "anneal_stages={2: {n_steps: 4}}"])
    assert over.anneal_for(1).n_steps == 4
    for bad, match in (({4.0: {"n_steps": 4}}, "anneals to"), ({3.0: {}}, "anneals to"),
                       ({2.0: {"gamma": 2.0}}, "gamma"), ({2.0: {"n_stepz": 4}}, "unknown key"),
                       ({2.0: {"n_steps": 0}}, "n_steps"), ({"hot": {}}, "temperatures")):
        with pytest.raises(BadInput, match=match):
            from_dict(PITAConfig, dict(TINY, anneal_stages=bad))


def test_score_from_energy_drops_the_score_network_in_one_place():
    # anneal.score_from=energy: the annealed drift is −∇U_η even when a score network exists (the
    # anneal, the model check and benchmarks/pita_one_step all build their model through this)
    import torch

    from boltzpath.diffusion.schedule import KarrasSchedule
    from boltzpath.diffusion.train import build_models
    from boltzpath.methods.pita import _network_model
    from boltzpath.targets.registry import make_target

    torch.manual_seed(0)
    target, schedule = make_target("dw4"), KarrasSchedule(0.01, 3.0)
    score, energy = build_models(target)
    with torch.no_grad():  # a non-zero score read-out, so both drifts differ
        for p in score.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, t = torch.randn(5, target.dim), 0.5
    net = _network_model(score, energy, target, schedule)
    from_energy = _network_model(score, energy, target, schedule, score_from="energy")
    energy_only = _network_model(None, energy, target, schedule)
    assert torch.allclose(from_energy.score(x, t), energy_only.score(x, t))
    assert not torch.allclose(net.score(x, t), energy_only.score(x, t))


def test_drift_line_names_the_stage_and_the_fix():
    from boltzpath.methods.pita import _drift_line
    from boltzpath.smc.relax import RelaxConfig

    info = {"steps": 500, "extended_steps": 0,
            "drift": {"mean_change": -0.8, "standard_error": 0.1, "z": -8.0, "window_steps": 150}}
    line = _drift_line(3, 1.75, info, RelaxConfig())
    assert "stage 3" in line and "T=1.75" in line and "-0.8" in line and "relax.extend_max_steps" in line
    assert _drift_line(3, 1.75, {**info, "drift": {**info["drift"], "z": -2.0}}, RelaxConfig()) is None
    assert _drift_line(3, 1.75, {"steps": 5}, RelaxConfig()) is None  # no frozen steps: no check
