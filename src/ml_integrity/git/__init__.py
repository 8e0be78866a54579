"""Git and Git LFS: the one git runner and the repository use cases.

Owns the git runner (:mod:`.runner`, the only place that runs ``git``), the
LFS filter proxy, transfer agent and batch API (:mod:`.lfs`), the repository
manifest and its verification (:mod:`.repository`), the staged-content checks
of the hooks (:mod:`.staged`), and the hook installation (:mod:`.hooks`; the
hook script itself is ``hooks/hook.sh`` at the top of the source tree).

May import: :mod:`ml_integrity.trust`, :mod:`ml_integrity.scan`,
:mod:`ml_integrity.core`, :mod:`ml_integrity.errors`. Never an entry point.
"""
