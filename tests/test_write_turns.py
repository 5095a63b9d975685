"""Every write of the store takes the table's write turn (``app.store.commits.write_turn``).

A store that notes, at each commit's cache invalidation and at each handle taken for a ref change,
whether the calling thread holds the table's turn: every write below must hold it there. Real Lance
tables on tmp_path; nothing is mocked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.services.branches import create_branch, delete_branch
from app.services.clones import clone
from app.services.embed import embed_table
from app.services.history import create_tag, delete_tag, move_tag, restore
from app.store import Ref, Store
from app.store.commits import holds_turn
from app.store.config import update_config
from embeddings.registry import load
from ingest.pipeline import IngestOptions, run_ingest


class TurnWitness(Store):
    """A store that records, for each invalidation (right after a commit) and each handle taken of its own
    (for a tag change), the table and whether this thread held that table's write turn."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.seen: list[tuple[str, str, bool]] = []

    def invalidate(self, name: str) -> None:
        self.seen.append(("invalidate", name, holds_turn(self, name)))
        super().invalidate(name)

    def own(self, name: str, branch: str | None = None):  # type: ignore[no-untyped-def]
        self.seen.append(("own", name, holds_turn(self, name)))
        return super().own(name, branch)

    def outside_turn(self) -> list[tuple[str, str, bool]]:
        found = [s for s in self.seen if not s[2]]
        self.seen.clear()
        return found


@pytest.fixture
def witness(digits_dir: Path, data_uri: str) -> TurnWitness:
    store = TurnWitness(data_uri)
    for folder in ("0", "1"):  # two versions, two fragments
        run_ingest(store, IngestOptions(table="t", sources=[str(digits_dir / "images" / folder)], progress=False))
    store.seen.clear()
    return store


def test_ref_changes_take_the_turn(witness: TurnWitness) -> None:
    create_tag(witness, "t", "v1", Ref(version=1))
    move_tag(witness, "t", "v1", Ref(version=2))
    delete_tag(witness, "t", "v1")
    create_branch(witness, "t", "side", Ref(version=1))
    delete_branch(witness, "t", "side")
    assert {s[0] for s in witness.seen} == {"own", "invalidate"}  # the witness saw the writes
    assert not witness.outside_turn()


def test_restore_and_clone_take_the_turn(witness: TurnWitness) -> None:
    restore(witness, "t", Ref(version=1))
    clone(witness, "t", "copy", Ref(version=2))
    assert {s[1] for s in witness.seen} == {"t", "copy"}
    assert not witness.outside_turn()


def test_embed_takes_the_turn(witness: TurnWitness) -> None:
    """A new vector column, then its refresh: each commits under the turn."""
    builtin = load("builtin")
    made = embed_table(witness, "t", builtin)
    refreshed = embed_table(witness, "t", builtin)
    assert refreshed["version"] == made["version"] + 1
    assert witness.seen and not witness.outside_turn()


def test_config_change_takes_the_turn(witness: TurnWitness) -> None:
    update_config(witness, "t", {"lightbox.recall.vector": "{}"})
    assert witness.seen and not witness.outside_turn()


def test_embed_computed_before_a_write_commits_nothing(witness: TurnWitness, digits_dir: Path) -> None:
    """Vectors computed from a version that another write followed are not committed over it: 409."""
    from app.errors import Conflict
    from app.services.embed import embed_fragment, embed_props, finish_embed, plan_embed

    builtin = load("builtin")
    job, fragments = plan_embed(witness, "t", builtin)
    outs = [embed_fragment(job, fid, builtin) for fid in fragments]
    run_ingest(witness, IngestOptions(table="t", sources=[str(digits_dir / "images" / "2")], progress=False))
    before = witness.head("t", fresh=True).version
    with pytest.raises(Conflict, match="changed while the column was computed"):
        finish_embed(witness, job, outs, embed_props(job, None, None))
    head = witness.head("t", fresh=True)
    assert head.version == before and "vector" not in head.schema.names
