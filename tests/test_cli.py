import json
import os
import subprocess
import sys

from hvpoison.cli import check, main


def test_check_reports_every_quantity_within_tolerance():
    rows = check(seed=3)
    assert len(rows) == 2 * (3 * 3 + 2)
    assert max(r[3] for r in rows) <= 1e-6


def test_check_command_exits_zero_and_prints_table(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "H v" in out and "OK: worst relative error" in out


def test_help_and_bad_arguments_are_one_line_errors():
    r = subprocess.run([sys.executable, "-m", "hvpoison", "check", "--seed", "x"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid int value" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "hvpoison", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "check" in r.stdout


COMMANDS = ["demo", "attack", "run", "plot", "reproduce", "data", "bench", "check"]


def test_every_command_has_help_with_an_example():
    for cmd in COMMANDS:
        r = subprocess.run([sys.executable, "-m", "hvpoison", cmd, "--help"],
                           capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.stderr)
        assert f"usage: hvpoison {cmd}" in r.stdout
        assert "example" in r.stdout, cmd


def _one_line_error(args, match, code=2):
    r = subprocess.run([sys.executable, "-m", "hvpoison", *args], capture_output=True, text=True)
    assert r.returncode == code, (args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert match in lines[-1], (args, r.stderr)
    assert sum("error" in ln for ln in lines) == 1, r.stderr
    return r


def test_bad_arguments_are_one_line_errors(tmp_path):
    _one_line_error(["run", str(tmp_path / "missing.toml")], "EXPERIMENT: expected a TOML file")
    bad = tmp_path / "bad.toml"
    bad.write_text('[attack]\niters = "many"\n')
    _one_line_error(["run", str(bad)], "attack.iters: expected int, got 'many'")
    _one_line_error(["attack", "--task", "mnist08"], "--task: expected one of")
    _one_line_error(["attack", "--lam", "big"], "expected none, large, cv, learned")
    _one_line_error(["attack", "--n-poison", "0"], "expected a positive integer, got '0'")
    _one_line_error(["attack", "--alpha", "-1", "--out", str(tmp_path / "a")],
                    "--alpha: expected")
    _one_line_error(["attack", "--alpha", "big"], "invalid float value: 'big'")
    _one_line_error(["attack", "--eta", "fast"], "expected a positive number or 'auto', got 'fast'")
    _one_line_error(["attack", "--eta", "0"], "expected a positive number or 'auto', got '0'")
    _one_line_error(["plot", str(tmp_path)], "RESULTS: expected a results folder")
    _one_line_error(["run", str(bad), "--reuse", str(tmp_path)],
                    "--reuse: expected a results folder (with experiment.json)")
    _one_line_error(["data", "check", "mnist8"], "DATASET: expected one of")
    _one_line_error(["demo", "--jobs", "-1"], "expected a positive integer")
    env = {**os.environ, "HVPOISON_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "hvpoison", "attack", "--task", "fmnist",
                        "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env={**env, "no_proxy": "*",
                                                             "https_proxy": "http://127.0.0.1:9",
                                                             "http_proxy": "http://127.0.0.1:9"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "fetch train-images-idx3-ubyte.gz" in r.stderr.splitlines()[-1]


def test_debug_shows_the_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hvpoison", "--debug", "run",
                        str(tmp_path / "missing.toml")], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_demo_quick_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test error, mean ± std" in out and "learning lam on the trusted set" in out
    assert (tmp_path / "d" / "summary.png").stat().st_size > 10_000
    assert (tmp_path / "d" / "summary.pdf").is_file()
    # beside the attack, its floor: label flipping alone on the settings with a fixed lam
    floor = json.loads((tmp_path / "d" / "floor" / "summary.json").read_text())
    assert floor["method"] == "flip" and list(floor["settings"]) == ["none", "large"]
    assert "the floor every attack must beat" in out and "attack flip against" in out
    flip = floor["settings"]["none"]["test_error"]["mean"][-1][0]
    assert f"(label flipping alone: {flip:.3f})" in out


def test_attack_run_and_plot_commands(tmp_path, capsys):
    args = ["--n-tr", "100", "--n-test", "200", "--n-poison", "10", "--n-batches", "1",
            "--iters", "2", "-T", "20", "--quiet"]
    assert main(["attack", "--lam", "-2.5", "--out", str(tmp_path / "a"), *args]) == 0
    rec = json.loads((tmp_path / "a" / "records" / "r000-large-b1.json").read_text())
    assert rec["lam"] == -2.5 and rec["fraction"] == 0.1
    floor = json.loads((tmp_path / "a" / "floor" / "records" / "r000-large-b1.json").read_text())
    assert floor["lam"] == -2.5 and floor["fraction"] == 0.1
    capsys.readouterr()
    assert main(["attack", "--lam", "learned", "--out", str(tmp_path / "l"), *args]) == 0
    assert "no floor computed: every setting learns lam" in capsys.readouterr().out
    assert not (tmp_path / "l" / "floor").exists()
    cfg = tmp_path / "e.toml"
    cfg.write_text('name = "e"\n[data]\ntask = "synthetic2d"\nn_tr = 40\nn_test = 200\n'
                   '[defense]\nsettings = ["none", "learned"]\n'
                   '[attack]\nn_poison = 4\nn_batches = 1\niters = 3\nT = 20\n'
                   '[test]\nT = 20\nkuncheva_k = [1]\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "r"), "--quiet", "--jobs", "2"]) == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["complete"]
    l1 = tmp_path / "l1.toml"
    l1.write_text(cfg.read_text().replace('[defense]\n', '[defense]\npenalty = "l1"\n'))
    assert main(["run", str(l1), "--out", str(tmp_path / "r1"), "--reuse", str(tmp_path / "r"),
                 "--quiet"]) == 0
    rec = json.loads((tmp_path / "r1" / "records" / "r000-none-b1.json").read_text())
    assert rec["copied_from"] == str(tmp_path / "r")
    assert "copied_from" not in json.loads(
        (tmp_path / "r1" / "records" / "r000-learned-b1.json").read_text())
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "r"), "--out", str(tmp_path / "p" / "fig")]) == 0
    assert (tmp_path / "p" / "fig.png").is_file()
    assert list(json.loads((tmp_path / "r" / "floor" / "summary.json").read_text())
                ["settings"]) == ["none"]                  # the floor of "none" only


def test_data_info_and_bench(capsys):
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "search order" in out and "task mnist " in out
    assert main(["bench", "--quick", "-n", "50"]) == 0
    out = capsys.readouterr().out
    assert "RMD hypergradient" in out and "MLP 784-32-16-1" in out


def test_demo_shows_the_attack_and_the_defence(tmp_path, capsys):
    """The main job's claim (issue #4): on the embedded subset the attack against lam = none
    at least doubles the clean test error by 20 %, and learned lam keeps it lower."""
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    st = json.loads((tmp_path / "summary.json").read_text())["settings"]
    none = [m[0] for m in st["none"]["test_error"]["mean"]]
    learned = [m[0] for m in st["learned"]["test_error"]["mean"]]
    large = [m[0] for m in st["large"]["test_error"]["mean"]]
    assert st["none"]["fraction"][-1] == 0.2
    assert none[-1] >= 2 * none[0]
    assert learned[-1] < 0.6 * none[-1]
    floor = json.loads((tmp_path / "floor" / "summary.json").read_text())["settings"]
    assert none[-1] > floor["none"]["test_error"]["mean"][-1][0] + 0.02   # beats its floor
    assert large[0] > none[0]                       # the large constant costs clean accuracy
