"""``python -m seqprob``: the same as the ``seqprob`` command."""

from seqprob.cli import main

raise SystemExit(main())
