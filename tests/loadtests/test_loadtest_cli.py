"""`gantry loadtest`: exit codes and one-line errors before any load is sent."""

from pathlib import Path

from typer.testing import CliRunner

from gantry.cli import app

runner = CliRunner()


def test_unknown_scenario_exits_2_and_lists_the_known(tmp_path: Path) -> None:
    res = runner.invoke(app, ["loadtest", "nope", "--state-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "no scenario 'nope'; known:" in res.output and "smoke" in res.output


def test_no_sandbox_exits_2_with_the_fix(tmp_path: Path) -> None:
    res = runner.invoke(app, ["loadtest", "smoke", "--state-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "gantry sandbox up" in res.output


def test_a_dead_target_exits_2_without_sending_load(tmp_path: Path) -> None:
    args = ["loadtest", "smoke", "--target", "http://127.0.0.1:9", "--state-dir", str(tmp_path),
            "--out", str(tmp_path / "run")]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert "not answering" in res.output and "no load was sent" in res.output
    assert not (tmp_path / "run" / "load.jsonl").exists()


def test_a_scenario_file_may_not_name_a_remote_host(tmp_path: Path) -> None:
    scn = tmp_path / "remote.yaml"
    scn.write_text(
        "name: remote\nservice: embedder\ntarget: https://models.example.com\n"
        "shape: {type: soak, users: 1, duration_s: 5}\n"
    )
    res = runner.invoke(app, ["loadtest", str(scn), "--state-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "remote.yaml:target:" in res.output and "--target" in res.output
