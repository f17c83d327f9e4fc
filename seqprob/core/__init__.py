"""The sequence-model contract, dispatching ops, persistence and input validation."""

from seqprob.core.contract import SequenceModel, State
from seqprob.core.device import resolve_device
from seqprob.core.language import LanguageModel, LMOutput
from seqprob.core.persist import Persistable, load, load_checkpoint, register, save_checkpoint
from seqprob.core.scan import linear_scan, selective_scan

__all__ = [
    "LMOutput",
    "LanguageModel",
    "Persistable",
    "SequenceModel",
    "State",
    "linear_scan",
    "load",
    "load_checkpoint",
    "register",
    "resolve_device",
    "save_checkpoint",
    "selective_scan",
]
