"""Every reference in the repository points inside it: no citation of documents a person who clones
the repository does not have (the protocol and model details a reader needs are in docs/protocol.md)."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", ".cache", "runs", "build", "dist", "wandb", ".pytest_cache",
             ".ruff_cache", "node_modules", ".mutation", "mutants"}  # .mutation: make mutation's scratch copies
# Written in pieces so that this file does not match itself.
FORBIDDEN = [
    re.compile("spec " + "§"),
    re.compile(r"\bspec " + r"(section|sections|sec\.?) ?\d", re.IGNORECASE),
    re.compile(r"\bspec \d+\.\d+"),
    re.compile("paper_numbers" + r"\.md"),
    re.compile(r"\.\./" + "shared"),
    re.compile("/work/" + "shared"),
]
# TODO lead: files still carrying citations, owned by helpers working on them concurrently (remove after merge).
PENDING: set = set()  # files still allowed to cite outside documents while being rewritten (none)


def text_files(root: pathlib.Path = ROOT):
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or SKIP_DIRS & set(rel.parts[:-1]) or rel.parts[0].endswith(".egg-info"):
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:  # binary (checkpoints, tensors, images)
            continue
        yield rel, data.decode("utf-8", errors="replace")


def citations(root: pathlib.Path = ROOT, pending: set = frozenset()) -> list[str]:
    found = []
    for rel, text in text_files(root):
        if rel.as_posix() in pending:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(p.search(line) for p in FORBIDDEN):
                found.append(f"{rel}:{number}: {line.strip()[:120]}")
    return found


def test_no_file_cites_documents_outside_the_repository():
    found = citations(pending=PENDING)
    assert not found, ("references to documents outside the repository (point to docs/ instead):\n"
                       + "\n".join(found))


def test_the_scan_finds_each_forbidden_form(tmp_path):
    (tmp_path / "a.py").write_text("x = 1  # see spec " + "§3.4\n")
    (tmp_path / "b.md").write_text("numbers in paper_numbers" + ".md\nok line\n")
    (tmp_path / "c.yaml").write_text("# /work/" + "shared/reference\n# spec " + "section 2.9\n")
    (tmp_path / "d.txt").write_text("../" + "shared/DESIGN.md\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "e").write_text("spec " + "§1\n")  # not part of the repository's files
    (tmp_path / "f.bin").write_bytes(b"\0spec " + "§1".encode())
    assert [line.split(":")[0] + ":" + line.split(":")[1] for line in citations(tmp_path)] == [
        "a.py:1", "b.md:1", "c.yaml:1", "c.yaml:2", "d.txt:1"]


def test_protocol_doc_exists_and_code_points_to_it():
    doc = ROOT / "docs" / "protocol.md"
    assert doc.is_file()
    headings = re.findall(r"^## (\d+)\. ", doc.read_text(encoding="utf-8"), re.MULTILINE)
    cited = {int(n) for _, text in text_files() for n in re.findall(r"docs/protocol\.md,? sections? (\d+)", text)}
    assert cited, "no code points to docs/protocol.md"
    assert cited <= {int(h) for h in headings}, f"citations of sections that do not exist: {cited}"
