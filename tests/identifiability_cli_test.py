"""The `jaxmoe` command line: identify and presets, JSON output, one-line errors with exit code 2."""

import json
import subprocess
import sys

import jaxmoe
from jaxmoe.cli import build_parser, main


def test_identify_temperature_json(capsys):
    assert main(["identify", "--expert", "gelu", "--router", "linear", "--temperature", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "dependent"
    assert any("dF/dtau@p1" in r for r in out["relations"][:2])


def test_identify_text_and_case(capsys):
    assert main(["identify", "--case", "ridge-gelu"]) == 0
    out = capsys.readouterr().out
    assert "verdict: independent" in out and "d2F/dbeta1[0]db@p1 - 1.000 * dF/da[0]@p1" in out


def test_identify_user_expert(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_experts.py").write_text(
        "import jax.numpy as jnp, jaxmoe\n"
        "sine = jaxmoe.Expert('sine', lambda x, eta: eta['a'] * jnp.sin(eta['b'] * x[0]), lambda d: {'a': (), 'b': ()})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["identify", "--expert", "my_experts:sine", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "dependent" and out["settings"]["expert"] == "sine"


def test_presets(capsys):
    assert main(["presets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(jaxmoe.PRESET_NAMES)
    assert all(r["row"] and r["theory"] and r["why"] and r["truth"] for r in rows)
    assert main(["presets", "softmax-linear"]) == 0
    assert "theory:" in capsys.readouterr().out


def test_errors_one_line_exit_2(capsys):
    for argv in (["identify", "--expert", "nope"], ["identify", "--bogus"], ["presets", "nope"], [],
                 ["identify", "--inputs", "0"], ["identify", "--expert", "no_such_module:x"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("jaxmoe: error: ") and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def test_parser_is_extensible():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"identify", "presets"} <= set(sub.choices)


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "jaxmoe", "presets", "nope"], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("jaxmoe: error: preset=")
