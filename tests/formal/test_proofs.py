"""Every proof of hwq.formal.proofs passes on the RTL (its covers reached), through
SymbiYosys; `hwq prove` runs the same set."""

import pytest

from hwq.formal.proofs import PROOFS, run_proof

pytestmark = pytest.mark.formal


def _param(p):
    return pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.slow else [])


@pytest.mark.parametrize("proof", [_param(p) for p in PROOFS])
def test_proof_passes(proof, tmp_path):
    row = run_proof(proof, tmp_path)
    assert row["result"] == "pass", row
