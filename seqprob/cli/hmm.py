"""``seqprob hmm fit``: fit a hidden Markov model to a CSV or NumPy file; print a JSON summary
and save the model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

MODELS = {"gaussian": "GaussianHMM", "categorical": "CategoricalHMM", "poisson": "PoissonHMM"}


def register(subparsers) -> None:
    parser = subparsers.add_parser("hmm", help="hidden Markov models: fit")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fit = actions.add_parser("fit", help="fit an HMM by EM; JSON summary and a saved model")
    fit.add_argument("input", help="a .csv (header row) or .npy file, one observation a row")
    fit.add_argument("--model", choices=sorted(MODELS), default="gaussian")
    fit.add_argument("-n", "--n-components", type=int, default=2)
    fit.add_argument("--covariance-type", choices=["spherical", "diag", "full", "tied"],
                     default="diag", help="Gaussian models only")
    fit.add_argument("--columns", help="comma-separated CSV columns to use (default: every "
                     "numeric column except --sequence-column)")
    source = fit.add_mutually_exclusive_group()
    source.add_argument("--sequence-column", help="CSV column of sequence ids: consecutive "
                        "rows with the same id form one sequence")
    source.add_argument("--lengths", help="a .npy or text file of sequence lengths")
    fit.add_argument("--n-iter", type=int, default=100)
    fit.add_argument("--tol", type=float, default=1e-2)
    fit.add_argument("--n-init", type=int, default=1)
    fit.add_argument("--random-state", type=int, default=0)
    fit.add_argument("--device", default="cpu")
    fit.add_argument("--output", default="hmm.safetensors", help="where to save the model")
    fit.set_defaults(func=run_fit)


def _read(args) -> tuple[np.ndarray, np.ndarray | None]:
    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"input: no file at {str(path)!r}")
    if path.suffix == ".npy":
        if args.sequence_column or args.columns:
            raise ValueError("--sequence-column and --columns apply to CSV input only")
        X = np.load(path, allow_pickle=False)
        X = X[:, None] if X.ndim == 1 else X
        return X, None
    import pandas as pd

    frame = pd.read_csv(path)
    lengths = None
    if args.sequence_column:
        if args.sequence_column not in frame:
            raise ValueError(f"--sequence-column: no column {args.sequence_column!r} in "
                             f"{list(frame.columns)}")
        ids = frame.pop(args.sequence_column).to_numpy()
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        lengths = np.diff(np.r_[starts, len(ids)])
    if args.columns:
        names = [c.strip() for c in args.columns.split(",")]
        missing = [c for c in names if c not in frame]
        if missing:
            raise ValueError(f"--columns: no column(s) {missing} in {list(frame.columns)}")
        frame = frame[names]
    else:
        frame = frame.select_dtypes("number")
    if frame.shape[1] == 0:
        raise ValueError("input: no numeric columns to fit")
    return frame.to_numpy(), lengths


def run_fit(args) -> int:
    from seqprob.hmm import estimators

    X, lengths = _read(args)
    if args.lengths:
        lengths_path = Path(args.lengths)
        lengths = (np.load(lengths_path) if lengths_path.suffix == ".npy"
                   else np.loadtxt(lengths_path, dtype=np.int64, ndmin=1))
    if args.model == "categorical":
        X = X.astype(np.int64)
    options = dict(n_iter=args.n_iter, tol=args.tol, n_init=args.n_init,
                   random_state=args.random_state, device=args.device)
    if args.model == "gaussian":
        options["covariance_type"] = args.covariance_type
    model = getattr(estimators, MODELS[args.model])(args.n_components, **options)
    with warnings.catch_warnings():  # non-convergence is reported in the summary
        warnings.simplefilter("ignore")
        model.fit(X, lengths)
    saved = model.save(args.output)
    summary = {
        "model": MODELS[args.model], "n_components": args.n_components,
        "n_samples": int(X.shape[0]), "n_sequences": 1 if lengths is None else len(lengths),
        "log_likelihood": model.score(X, lengths), "aic": model.aic(X, lengths),
        "bic": model.bic(X, lengths), "n_iter": int(model.n_iter_),
        "converged": bool(model.converged_), "output": str(saved),
    }
    print(json.dumps(summary, indent=2))
    return 0
