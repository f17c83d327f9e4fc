"""``seqprob hmm fit``: fit a hidden Markov model to a CSV or NumPy file, print a JSON summary
and save the model; ``seqprob hmm decode``: the most likely states of new data under a saved
model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from seqprob.cli.files import input_file, output_file, read_csv, text_output
from seqprob.core import resolve_device

MODELS = {"gaussian": "GaussianHMM", "categorical": "CategoricalHMM", "poisson": "PoissonHMM"}


def register(subparsers) -> None:
    parser = subparsers.add_parser("hmm", help="hidden Markov models: fit, decode")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fit = actions.add_parser("fit", help="fit an HMM by EM; JSON summary and a saved model")
    _add_data_arguments(fit)
    fit.add_argument("--model", choices=sorted(MODELS), default="gaussian",
                     help="emission family (categorical: one integer symbol a row)")
    fit.add_argument("-n", "--n-components", type=int, default=2, help="hidden states")
    fit.add_argument("--covariance-type", choices=["spherical", "diag", "full", "tied"],
                     default="diag", help="Gaussian models only")
    fit.add_argument("--n-iter", type=int, default=100, help="at most this many EM iterations")
    fit.add_argument("--tol", type=float, default=1e-2,
                     help="stop when the log-likelihood gains less than this")
    fit.add_argument("--n-init", type=int, default=1,
                     help="EM runs from different initializations; the best is kept")
    fit.add_argument("--random-state", type=int, default=0, help="seed of the initialization")
    fit.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    fit.add_argument("--output", type=output_file, default="hmm.safetensors",
                     help="where to save the model")
    fit.set_defaults(func=run_fit)
    decode = actions.add_parser("decode", help="the most likely hidden state of every row "
                                "under a model saved by 'hmm fit'")
    decode.add_argument("model", type=input_file, help="a model saved by 'seqprob hmm fit'")
    _add_data_arguments(decode)
    decode.add_argument("--algorithm", choices=["viterbi", "map"], default="viterbi",
                        help="viterbi: the most likely path; map: each row's most likely state")
    decode.add_argument("--output", type=output_file,
                        help="CSV of the states (column 'state'; default: standard output)")
    decode.set_defaults(func=run_decode)


def _add_data_arguments(parser) -> None:
    parser.add_argument("input", type=input_file,
                        help="a .csv (header row) or .npy file, one observation a row")
    parser.add_argument("--columns", help="comma-separated CSV columns to use (default: every "
                        "numeric column except --sequence-column)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--sequence-column", help="CSV column of sequence ids: consecutive "
                        "rows with the same id form one sequence")
    source.add_argument("--lengths", type=input_file,
                        help="a .npy or text file of sequence lengths")


def _read(args) -> tuple[np.ndarray, np.ndarray | None]:
    path = args.input
    if path.suffix == ".npy":
        if args.sequence_column or args.columns:
            raise ValueError("--sequence-column and --columns apply to CSV input only")
        try:
            X = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ValueError(f"input: {str(path)!r} is not a readable .npy array: {err}"
                             ) from None
        X = X[:, None] if X.ndim == 1 else X
        return X, None
    frame = read_csv(path)
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


def _read_lengths(path: Path | None, lengths: np.ndarray | None) -> np.ndarray | None:
    if path is None:
        return lengths
    try:
        return (np.load(path, allow_pickle=False) if path.suffix == ".npy"
                else np.loadtxt(path, dtype=np.int64, ndmin=1))
    except (ValueError, OSError) as err:
        raise ValueError(f"--lengths: {str(path)!r} is not a list of integers: {err}") from None


def _symbols(X: np.ndarray) -> np.ndarray:
    """Categorical observations as int64, refusing anything but whole numbers (-1: missing)."""
    if X.dtype.kind not in "fiub":
        raise ValueError(f"input: categorical symbols must be integers, got dtype {X.dtype}")
    if X.dtype.kind == "f":
        bad = ~np.isfinite(X) | (X != np.round(X))
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ValueError("input: categorical symbols must be integers (-1 for a missing "
                             f"one), got {X[row].tolist()} in data row {row}")
    return X.astype(np.int64)


def _load_data(args, categorical: bool) -> tuple[np.ndarray, np.ndarray | None]:
    X, lengths = _read(args)
    return (_symbols(X) if categorical else X), _read_lengths(args.lengths, lengths)


def run_fit(args) -> int:
    from seqprob.hmm import estimators

    X, lengths = _load_data(args, args.model == "categorical")
    options = dict(n_iter=args.n_iter, tol=args.tol, n_init=args.n_init,
                   random_state=args.random_state,
                   device=str(resolve_device(args.device)))
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


def load_model(path: Path):
    """The estimator saved at ``path`` by ``hmm fit``, whichever family it is."""
    from seqprob.core import load_checkpoint
    from seqprob.hmm import estimators

    kind = load_checkpoint(path)[2]
    names = {f"estimator.{name}": name for name in MODELS.values()}
    if kind not in names:
        raise ValueError(f"model: {str(path)!r} holds a {kind!r}, not an HMM saved by "
                         f"'seqprob hmm fit' (one of {sorted(names)})")
    return getattr(estimators, names[kind]).load(path)


def run_decode(args) -> int:
    model = load_model(args.model)
    X, lengths = _load_data(args, type(model).__name__ == "CategoricalHMM")
    log_prob, states = model.decode(X, lengths, algorithm=args.algorithm)
    with text_output(args.output) as out:
        out.write("state\n")
        out.write("".join(f"{s}\n" for s in states.tolist()))
    summary = {"model": type(model).__name__, "algorithm": args.algorithm,
               "n_samples": int(X.shape[0]), "log_prob": log_prob,
               "output": str(args.output)}
    if args.output is not None:
        print(json.dumps(summary, indent=2))
    return 0
