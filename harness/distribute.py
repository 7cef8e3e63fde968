"""Work units for pytest-xdist: consecutive cases of one suite, kept on one worker.

Plain load scheduling hands items out one by one, round robin, so a worker's batch
would mostly hold images other workers need. Grouping every item of a chunk of
cases on one worker lets each worker batch exactly its own images. The same chunk
function runs on the controller (which sees node ids only) and in the workers'
planning, so both sides agree on the partition.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.spec import SUITE_SUFFIX

VARIANTS_PER_CASE_GUESS = 4


def cases_per_chunk(batch_size: int) -> int:
    """Cases per work unit: about one batch of images (a case has ~4 variants)."""
    return max(1, batch_size // VARIANTS_PER_CASE_GUESS)


def split_nodeid(nodeid: str) -> tuple[str, str] | None:
    """(suite file, case id) of an xai item's node id, or None for other tests."""
    path, sep, name = nodeid.partition("::")
    if not sep or not path.endswith(SUITE_SUFFIX) or not name.endswith("]") or "[" not in name:
        return None
    return path, name[: name.rfind("[")]


def chunk_map(nodeids: Iterable[str], batch_size: int) -> dict[str, str]:
    """Node id → work unit name, by each case's position among the selected cases of its suite."""
    per_chunk = cases_per_chunk(batch_size)
    ordinals: dict[str, dict[str, int]] = {}
    out: dict[str, str] = {}
    for nodeid in nodeids:
        parts = split_nodeid(nodeid)
        if parts is None:
            continue
        path, case = parts
        cases = ordinals.setdefault(path, {})
        ordinal = cases.setdefault(case, len(cases))
        out[nodeid] = f"{path}::chunk{ordinal // per_chunk}"
    return out


def make_scheduler_class():  # pragma: no cover - exercised through xdist runs
    """A LoadScopeScheduling whose scopes are case chunks (other tests: one scope each)."""
    from xdist.scheduler import LoadScopeScheduling

    class CaseChunkScheduling(LoadScopeScheduling):
        _chunks: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            # LoadScopeScheduling.schedule() sets self.collection just before it splits
            # the node ids into scopes, so the partition is computed on first use.
            if self._chunks is None:
                from harness.plugin import batch_size_of

                self._chunks = chunk_map(self.collection or [], batch_size_of(self.config))
            return self._chunks.get(nodeid, nodeid)

    return CaseChunkScheduling
