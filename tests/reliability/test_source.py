"""Nothing downloaded runs as code: no source file of the package deserialises with pickle, ``eval``/``exec``,
``allow_pickle`` or Keras' ``load_model`` (weights are loaded into the registry's own builders)."""

from __future__ import annotations

import re

from helpers import ROOT

FORBIDDEN = {
    "pickle": r"\b(c?pickle|cloudpickle|dill|joblib|marshal|shelve)\b",
    "allow_pickle=True": r"allow_pickle\s*=\s*True",
    "eval(": r"\beval\s*\(",
    "exec(": r"\bexec\s*\(",
    "safe_mode=False": r"safe_mode\s*=\s*False",
    "load_model(": r"\bload_model\s*\(|keras\.models\.load_model|saving\.load_model",
    "torch.load / yaml.load": r"\btorch\.load\s*\(|\byaml\.(unsafe_)?load\s*\(",
}
SOURCES = sorted((ROOT / "src" / "fashionzoo").rglob("*.py"))


def test_forbidden_patterns_do_match_what_they_forbid() -> None:
    planted = [
        "import pickle",
        "np.load(f, allow_pickle=True)",
        "eval(text)",
        "exec (code)",
        "keras.saving.load_model(p, safe_mode=False)",
        "keras.models.load_model(p)",
        "yaml.load(s)",
    ]
    for line in planted:
        assert any(re.search(pattern, line) for pattern in FORBIDDEN.values()), line


def test_no_source_file_deserialises_downloads_as_code() -> None:
    assert len(SOURCES) >= 10
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}"
        for path in SOURCES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for what, pattern in FORBIDDEN.items()
        if re.search(pattern, line)
    ]
    assert hits == []
