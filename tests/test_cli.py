from seqprob.cli import main


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "scan backend" in out and "reference" in out and "torch" in out


def test_info_reports_omp_wait_policy(capsys, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["info"]) == 0
    assert "OMP_WAIT_POLICY: unset (on a busy machine" in capsys.readouterr().out
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert main(["info"]) == 0
    assert "OMP_WAIT_POLICY: PASSIVE\n" in capsys.readouterr().out
