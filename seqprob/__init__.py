"""seqprob: hidden Markov models, deep state-space layers and forecasters behind one
sequence-model contract (parallel ``forward``, recurrent ``step``)."""

from seqprob.core import SequenceModel, State, load

__version__ = "0.1.0"
__all__ = ["SequenceModel", "State", "__version__", "load"]
