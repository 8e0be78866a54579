"""``python -m ml_integrity.action``: the entry point ``action.yml`` runs."""

from ml_integrity.action.main import main

raise SystemExit(main())
