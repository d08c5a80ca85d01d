import json

from ml_backend import methods
from ml_backend.__main__ import main
from ml_backend.bench import EXIT_UNAVAILABLE


def test_build_db_cli(synth_dataset, tmp_path, capsys):
    assert main(["build-db", "--dataset", str(synth_dataset.root), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith(".h5") and "db-sift-n4000-" in out


def test_cli_errors_are_messages(tmp_path, capsys):
    assert main(["build-db", "--dataset", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    assert "manifest.json not found" in capsys.readouterr().err
    assert main(["run-method", "--method", "nope", "--dataset", str(tmp_path), "--workdir", str(tmp_path),
                 "--out", str(tmp_path / "o.json")]) == 1
    assert "unknown method" in capsys.readouterr().err


def test_unavailable_method_is_skipped(synth_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(methods.REGISTRY, "broken", "ml_backend.methods.does_not_exist")
    out = tmp_path / "o.json"
    rc = main(["run-method", "--method", "broken", "--dataset", str(synth_dataset.root), "--workdir",
               str(tmp_path), "--out", str(out)])
    assert rc == EXIT_UNAVAILABLE
    assert "cannot import" in json.loads(out.read_text())["skipped"]


def test_run_method_rows(synth_dataset, synth_db, tmp_path):
    out = tmp_path / "rows.json"
    conf = json.dumps({"database": str(synth_db), "progress": False})
    assert main(["run-method", "--method", "retrieval_nn", "--dataset", str(synth_dataset.root), "--workdir",
                 str(tmp_path), "--out", str(out), "--conf", conf]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == len(synth_dataset.split("query"))
    assert all(len(r["cam_from_world"]) == 4 and r["retrieved"].startswith("reference_") for r in rows)
