import pytest

from edgeai.config import load_settings
from edgeai.errors import BadInput


def test_precedence_cli_over_env_over_toml_over_defaults(edgeai_home, monkeypatch):
    assert load_settings().n_ctx == 4096 and load_settings().home == edgeai_home.resolve()
    edgeai_home.mkdir(parents=True)
    (edgeai_home / "config.toml").write_text('model = "from-toml"\nn_ctx = 1024\nthreads = 3\n')
    settings = load_settings()
    assert (settings.model, settings.n_ctx, settings.threads) == ("from-toml", 1024, 3)
    monkeypatch.setenv("EDGEAI_MODEL", "from-env")
    monkeypatch.setenv("EDGEAI_CTX", "2048")
    settings = load_settings()
    assert (settings.model, settings.n_ctx, settings.threads) == ("from-env", 2048, 3)
    settings = load_settings({"model": "from-cli", "n_ctx": None})
    assert (settings.model, settings.n_ctx) == ("from-cli", 2048)


def test_bad_config_files_and_values_are_clear(edgeai_home, monkeypatch):
    edgeai_home.mkdir(parents=True)
    config = edgeai_home / "config.toml"
    config.write_text("model = [unclosed")
    with pytest.raises(BadInput, match="not valid TOML"):
        load_settings()
    config.write_text('modle = "typo"\n')
    with pytest.raises(BadInput, match="unknown setting"):
        load_settings()
    config.unlink()
    monkeypatch.setenv("EDGEAI_THREADS", "lots")
    with pytest.raises(BadInput, match="EDGEAI_THREADS"):
        load_settings()


def test_models_dir_can_move(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEAI_MODELS_DIR", str(tmp_path / "big-disk"))
    assert load_settings().models_dir == (tmp_path / "big-disk").resolve()
