"""run.py report: the final kernel taxonomy, each class beside its chance share, per (model, init)."""

from torch.utils.tensorboard import SummaryWriter

from neural_echos.tools.report import TAXONOMY, report
from tests.neural_echos.tools.test_report import CONVNEXT, DOG, KAIMING, STEPS_PER_EPOCH, read_csv, write_run


def add_taxonomy(run_dir, shares, chance, epochs):
    writer = SummaryWriter(log_dir=str(run_dir))
    for epoch in range(epochs):
        step = (epoch + 1) * STEPS_PER_EPOCH - 1
        for name, share, base in zip(TAXONOMY, shares, chance):
            writer.add_scalar(f"kernels/taxonomy/{name}", share + 0.001 * epoch, step)
            writer.add_scalar(f"kernels/taxonomy_chance/{name}", base, step)
    writer.close()


def test_taxonomy_table_means_final_shares_with_chance(tmp_path):
    logs = tmp_path / "logs"
    shares = (0.1, 0.1, 0.4, 0.05, 0.05, 0.2, 0.09, 0.01)
    chance = (0.01, 0.01, 0.3, 0.01, 0.4, 0.1, 0.07, 0.1)
    for seed in (0, 1):
        run = write_run(
            logs / "dog" / f"s{seed}",
            CONVNEXT,
            DOG,
            seed,
            [0.5, 0.6],
            proportions=[(0.5, 0.5, 0.0)] * 3,
            chance=(0.01, 0.01, 0.98),
            session_extra={"snapshot/classifier": "template"},
        )
        add_taxonomy(run, [s + 0.01 * seed for s in shares], chance, epochs=2)
    write_run(logs / "kaiming" / "s0", CONVNEXT, KAIMING, 0, [0.5, 0.55])  # logged no taxonomy
    out = tmp_path / "out"
    report([logs], out)
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "Final kernel taxonomy" in md
    # blob: 0.4 + 0.001 (last epoch) + mean(0, 0.01) = 0.406, chance 0.3
    assert "| dog | 0.106 (0.010) | 0.106 (0.010) | 0.406 (0.300) | 0.056 (0.010) |" in md
    rows = {row["init"]: row for row in read_csv(out / "results.csv")}
    assert (
        rows["dog"]["taxonomy_blob"] == "0.4060" and rows["dog"]["taxonomy_chance_shifted_delta"] == "0.4000"
    )
    assert rows["kaiming_normal"]["taxonomy_blob"] == ""  # no partial mean, no invented number
    assert "kernel shares read by the template classifier" in md
