"""The run's seed has one source: the seed the CLI passes to RNGStateCheckpoint (callbacks.rng_state.run_seed)."""

from types import SimpleNamespace

from callbacks.rng_state import RNGStateCheckpoint, run_seed


def test_the_seed_passed_to_the_trainer_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    trainer = SimpleNamespace(callbacks=[RNGStateCheckpoint(seed=5)])
    assert run_seed(trainer, default=0) == 5
    assert RNGStateCheckpoint(seed=5).state_dict()["seed"] == 5


def test_without_a_passed_seed_lightnings_seed_everything_seed_or_the_default(monkeypatch):
    trainer = SimpleNamespace(callbacks=[RNGStateCheckpoint()])
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    assert run_seed(trainer, default=0) == 11 and run_seed(None, default=0) == 11
    monkeypatch.delenv("PL_GLOBAL_SEED")
    assert run_seed(trainer, default=-1) == -1 and run_seed(None, default=0) == 0
    assert "seed" not in RNGStateCheckpoint().state_dict()
