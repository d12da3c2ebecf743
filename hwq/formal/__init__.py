"""Formal proofs of the RTL blocks against :mod:`hwq.golden` (SymbiYosys, ``hwq prove``).

:mod:`hwq.formal.spec` states the golden definitions as Amaranth expressions,
:mod:`hwq.formal.harness` builds one proof harness per block, :mod:`hwq.formal.sby` runs
them through SymbiYosys and :mod:`hwq.formal.replay` turns a counterexample back into a
concrete test vector checked against :mod:`hwq.golden`.
"""
