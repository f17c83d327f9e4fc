"""The sequence-model contract, dispatching ops, persistence and input validation."""

from seqprob.core.contract import SequenceModel, State
from seqprob.core.device import resolve_device
from seqprob.core.language import LanguageModel, LMOutput
from seqprob.core.persist import Persistable, load, load_checkpoint, register, save_checkpoint
from seqprob.core.scan import selective_scan, selective_state_update

__all__ = [
    "LMOutput",
    "LanguageModel",
    "Persistable",
    "SequenceModel",
    "State",
    "load",
    "load_checkpoint",
    "register",
    "resolve_device",
    "save_checkpoint",
    "selective_scan",
    "selective_state_update",
]
