"""Git and Git LFS: the one git runner and the repository use cases.

- :mod:`.runner`: the only place that runs ``git``; :mod:`.lfs`: the only
  place that runs ``git-lfs`` (helper processes, ``git lfs ARGS``);
- LFS protocols: :mod:`.pktline` (framing), :mod:`.filter` (the filter proxy
  in front of ``git-lfs filter-process``), :mod:`.agent` (the standalone
  transfer agent), :mod:`.batch` (the batch API client for HTTP remotes);
- the repository: :mod:`.repository` (listings, trust, signatures),
  :mod:`.manifests` (the manifest at commit time), :mod:`.verification` (the
  verdict of a tree), :mod:`.gates` (the smudge and download gates);
- hooks: :mod:`.staged` (the pre-commit checks of the index) and
  :mod:`.hooks` (installation; the hook script is ``hooks/hook.sh``).

May import: :mod:`ml_integrity.trust`, :mod:`ml_integrity.scan`,
:mod:`ml_integrity.core`, :mod:`ml_integrity.errors`. Never an entry point.
"""
