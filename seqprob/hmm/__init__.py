"""Hidden Markov models: exact inference, EM (full, stepwise, distributed), estimators."""

from seqprob.hmm.distill import DistillResult, distill
from seqprob.hmm.emissions import CategoricalEmission, GaussianEmission, PoissonEmission
from seqprob.hmm.estimators import CategoricalHMM, GaussianHMM, PoissonHMM
from seqprob.hmm.model import HMM, HMMState

__all__ = ["HMM", "CategoricalEmission", "CategoricalHMM", "DistillResult", "GaussianEmission",
           "GaussianHMM", "HMMState", "PoissonEmission", "PoissonHMM", "distill"]
