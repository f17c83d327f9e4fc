from seqprob.cli import main


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "scan backend" in out and "reference" in out and "torch" in out
