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
