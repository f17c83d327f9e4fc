"""Hidden Markov models: exact inference, EM (full, stepwise, distributed), estimators."""

from seqprob.hmm.distill import DistillResult, distill
from seqprob.hmm.emissions import (
    CategoricalEmission,
    GaussianEmission,
    GaussianMixtureEmission,
    MultinomialEmission,
    PoissonEmission,
)
from seqprob.hmm.estimators import GMMHMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM
from seqprob.hmm.model import HMM, HMMState

__all__ = ["GMMHMM", "HMM", "CategoricalEmission", "CategoricalHMM", "DistillResult",
           "GaussianEmission", "GaussianHMM", "GaussianMixtureEmission", "HMMState",
           "MultinomialEmission", "MultinomialHMM", "PoissonEmission", "PoissonHMM", "distill"]
