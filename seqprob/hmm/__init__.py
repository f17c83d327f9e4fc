"""Hidden Markov models: exact inference, EM (full, stepwise, distributed), estimators,
distillation from a language model and its compact artifact file."""

from seqprob.hmm.artifact import load_artifact, load_hmm, save_artifact
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
           "MultinomialEmission", "MultinomialHMM", "PoissonEmission", "PoissonHMM", "distill",
           "load_artifact", "load_hmm", "save_artifact"]
