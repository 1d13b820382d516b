"""Settings: POEMRAG_* environment variables, .env files, secret handling."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from poemrag.settings import PACKAGED_MODEL_DIR, Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    s = Settings()
    assert s.data_dir == tmp_path / "xdg" / "poemrag"
    assert s.collection == "tang_poems" and s.backend is None  # detected from the model
    assert s.model == str(PACKAGED_MODEL_DIR) and s.qdrant_url is None
    assert s.store_path == s.data_dir / "qdrant" / "tang_poems"
    assert s.corpus_dir == s.data_dir / "corpus"


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("POEMRAG_COLLECTION=from_dotenv\nPOEMRAG_BATCH_SIZE=8\n")
    monkeypatch.setenv("POEMRAG_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("POEMRAG_BACKEND", "torch")
    s = Settings()
    assert s.collection == "from_dotenv" and s.batch_size == 8
    assert s.data_dir == tmp_path / "d" and s.backend == "torch"


def test_api_key_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POEMRAG_QDRANT_API_KEY", "s3cret-key")
    s = Settings()
    assert "s3cret-key" not in repr(s) and "s3cret-key" not in str(s.model_dump())
    assert s.qdrant_api_key is not None and s.qdrant_api_key.get_secret_value() == "s3cret-key"


@pytest.mark.parametrize(("var", "value"), [("POEMRAG_BACKEND", "gpu"), ("POEMRAG_BATCH_SIZE", "0")])
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        Settings()


def test_packaged_model_names_resolve_to_their_directories(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from poemrag.fingerprint import model_fingerprint
    from poemrag.settings import resolve_model

    monkeypatch.chdir(tmp_path)
    assert resolve_model("poemrag-zh-1792") == str(PACKAGED_MODEL_DIR)
    assert model_fingerprint("poemrag-zh-1792") == model_fingerprint(str(PACKAGED_MODEL_DIR))
    for other in ("richinfoai/ritrieve_zh_v1", "/no/such/dir", "no-such-packaged-model"):
        assert resolve_model(other) == other
    (tmp_path / "poemrag-zh-1792").mkdir()  # a local directory of that name wins
    assert resolve_model("poemrag-zh-1792") == "poemrag-zh-1792"
